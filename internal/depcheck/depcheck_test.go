// Package depcheck keeps the dependency arrows between regmirror's packages
// as designed: cmd/regmirror wires everything; mirror, cache, eviction and
// credentials import none of the others; upstream may use credentials;
// internal/ldapauth imports none; internal/notify (webhooks) only the
// metrics helper: the mirror, upstream and eviction know nothing of it.
// internal/admin (the cache operations and the admin socket) sits on
// cache, eviction and mirror; internal/statuspage on admin and the
// snapshots of mirror and upstream; neither reaches back up to cmd.
// The cache reaches its index rows through cache/index, and only
// cache/index/badgerindex imports Badger. It also keeps one glob dialect:
// only internal/repoglob calls path.Match.
package depcheck

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/regmirror/regmirror/"

// allowed lists, per package, the project packages it may import.
var allowed = map[string][]string{
	"mirror": {"internal/bloblookup", "internal/fill", "internal/ociserver", "internal/promreg", "internal/registryhost", "internal/repoglob"},
	// fill is the one way upstream fills are coalesced.
	"internal/fill": nil,
	// ociserver is the protocol over one Backend interface: no cache, no
	// upstream, no storage (TestProtocolServerKnowsNoStorage checks its
	// dependencies all the way down).
	"internal/ociserver": nil,
	"cache":              {"cache/blobstore", "cache/index", "cache/index/badgerindex", "internal/bloblookup", "internal/fill", "internal/promreg"},
	// bloblookup names what the cache tells the mirror of a blob in one read.
	"internal/bloblookup": nil,
	// blobstore names what the cache needs of its blob storage; its
	// contract suite and the store in a bucket know only it.
	"cache/blobstore":   nil,
	"cache/storagetest": {"cache/blobstore"},
	"cache/s3blobs":     {"cache/blobstore"},
	// Leases share the bucket with the blobs; the blob store's
	// s3blobs.NewClient makes their client, outside the package.
	"cache/s3lease": nil,
	// The janitor keeps the shared bucket within its budget, through the
	// blob store and under a lease; cmd/regmirror wires it.
	"cache/s3janitor": {"cache/blobstore", "cache/s3blobs", "cache/s3lease", "internal/promreg"},
	// bucket is what the daemon makes of the shared bucket: blobs, links,
	// fill leases and the janitor; the cache and the mirror know it only
	// through their own small interfaces.
	"cache/bucket": {"cache/s3blobs", "cache/s3janitor", "cache/s3lease", "internal/promreg"},
	// index names what the cache needs of its index rows; its contract
	// suite and its Badger implementation know only it.
	"cache/index":             nil,
	"cache/index/indextest":   {"cache/index"},
	"cache/index/badgerindex": {"cache/index"},
	"eviction":                {"internal/repoglob"},
	"credentials":             {"internal/registryhost"},
	"upstream":                {"credentials", "internal/keypair", "internal/promreg", "internal/registryhost"},
	// ldapauth is an LDAP client and nothing else: cmd/regmirror hands
	// it to mirror, which knows it only as a mirror.Directory.
	"internal/ldapauth": nil,
	// edge refuses malformed requests before the mirror sees them, in the
	// protocol's error format.
	"internal/edge":     {"internal/promreg", "internal/ociserver"},
	"internal/repoglob": nil,
	// s3test runs versitygw for tests and knows nothing of the project.
	"internal/s3test": {"internal/testnet"},
	// nginxtest runs nginx for tests and knows nothing of the project.
	"internal/nginxtest": {"internal/testnet"},
	// cluster is the peer layer of replicas sharing a bucket (membership,
	// ownership, the signed channel, forwarding); cmd/regmirror wires it.
	"internal/cluster": nil,
	// notify sends webhooks; cmd/regmirror adapts the mirror's events and
	// the upstreams' and eviction's hooks to it.
	"internal/notify": {"internal/promreg"},
	// admin runs the cache operations for the CLI and the admin socket.
	"internal/admin": {"cache", "eviction", "mirror"},
	// statuspage reads typed snapshots through interfaces of its own.
	"internal/statuspage": {"internal/admin", "mirror", "upstream"},
}

func TestDependencyDirection(t *testing.T) {
	t.Parallel()
	for pkg, ok := range allowed {
		out, err := exec.Command("go", "list", "-f", `{{join .Imports "\n"}}`, module+pkg).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", pkg, err)
		}
		for _, imp := range strings.Fields(string(out)) {
			own, isOwn := strings.CutPrefix(imp, module)
			if isOwn && !slices.Contains(ok, own) {
				t.Errorf("%s imports %s; the design allows only %v", pkg, own, ok)
			}
		}
	}
}

// The protocol server reaches no cache, upstream client or Badger, not
// even through a package it imports.
func TestProtocolServerKnowsNoStorage(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", module+"internal/ociserver").Output()
	if err != nil {
		t.Fatalf("go list -deps internal/ociserver: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		own, isOwn := strings.CutPrefix(dep, module)
		if isOwn && own != "internal/ociserver" || strings.Contains(dep, "badger") ||
			strings.Contains(dep, "go-containerregistry") {
			t.Errorf("internal/ociserver depends on %s", dep)
		}
	}
}
