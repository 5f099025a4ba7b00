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
	"mirror": {"internal/promreg", "internal/registryhost", "internal/repoglob"},
	"cache":  {"cache/blobstore", "cache/index", "cache/index/badgerindex", "internal/promreg"},
	// blobstore names what the cache needs of its blob storage; its
	// contract suite knows only it.
	"cache/blobstore":   nil,
	"cache/storagetest": {"cache/blobstore"},
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
	"internal/repoglob": nil,
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
