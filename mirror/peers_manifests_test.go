package mirror_test

import (
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/mirror"
)

// assertManifestGets checks that the upstream sent each manifest of ix
// want times.
func assertManifestGets(t *testing.T, up *registrytest.Registry, ix registrytest.Index, want int) {
	t.Helper()
	if n := up.ManifestGets("library/node", ix.Descriptor.Digest.String()); n != want {
		t.Errorf("index %s: %d upstream GETs; want %d", ix.Descriptor.Digest, n, want)
	}
	for _, img := range ix.Images {
		if n := up.ManifestGets("library/node", img.Manifest.Digest.String()); n != want {
			t.Errorf("manifest %s: %d upstream GETs; want %d", img.Manifest.Digest, n, want)
		}
	}
}

// Two replicas that do not own a tag ask its owner where it points, and
// the owner alone asks the upstream: one HEAD per tag and one GET per
// manifest across the three, and while the tag is fresh at the owner a
// replica whose own copy expired revalidates it without the upstream.
func TestClusterTagsAndManifestsGoThroughTheOwner(t *testing.T) {
	t.Parallel()
	owner := newEnv(t, envOptions{wrap: trustPeers})
	ix := owner.pushNode(t, 1, 4096)
	link := &peerLink{owner: owner.mirror.URL}
	replicas := []*env{
		newEnv(t, envOptions{shared: owner.upstream, peers: link}),
		newEnv(t, envOptions{shared: owner.upstream, peers: link}),
	}

	replicas[0].pullIndex(t, "library/node", "10", ix)
	replicas[1].pullIndex(t, "library/node", "10", ix)
	owner.pullIndex(t, "library/node", "10", ix)

	up := owner.upstream
	if heads, gets := up.ManifestHeads("library/node", "10"), up.ManifestGets("library/node", "10"); heads != 1 || gets != 0 {
		t.Errorf("the upstream saw %d HEADs and %d GETs of the tag across three replicas; want 1 and 0", heads, gets)
	}
	assertManifestGets(t, up, ix, 1)

	// The replica's copy of the tag expires; the owner's is fresh.
	replicas[0].clock.Advance(mirror.DefaultTagTTL + time.Second)
	replicas[0].pullIndex(t, "library/node", "10", ix)
	if heads := up.ManifestHeads("library/node", "10"); heads != 1 {
		t.Errorf("a revalidation through the owner, fresh there, cost the upstream a HEAD: %d in all", heads)
	}
	for _, r := range append(replicas, owner) {
		if n := metricSum(t, r.metrics, "regmirror_cluster_forward_failures_total", nil); n != 0 {
			t.Errorf("%v forward failures; want 0", n)
		}
	}
}

// A replica whose owner is down revalidates tags and fetches manifests
// from the upstream, counting each failed forward.
func TestClusterManifestsFallBackToTheUpstreamWhenTheOwnerIsDown(t *testing.T) {
	t.Parallel()
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	replica := newEnv(t, envOptions{peers: &peerLink{owner: dead.URL}})
	ix := replica.pushNode(t, 1, 4096)

	head := replica.do(t, http.MethodHead, "/v2/library/node/manifests/10", nil)
	if head.status != http.StatusOK || head.header.Get("Docker-Content-Digest") != ix.Descriptor.Digest.String() {
		t.Fatalf("HEAD = %d %q; want 200 %s", head.status, head.header.Get("Docker-Content-Digest"), ix.Descriptor.Digest)
	}
	child := ix.Images[0].Manifest
	replica.expectContent(t, "/v2/library/node/manifests/"+child.Digest.String(), child, ix.Images[0].ManifestBytes)

	up := replica.upstream
	if heads := up.ManifestHeads("library/node", "10"); heads != 1 {
		t.Errorf("%d upstream HEADs of the tag; want 1", heads)
	}
	if n := up.ManifestGets("library/node", ix.Descriptor.Digest.String()) + up.ManifestGets("library/node", child.Digest.String()); n != 2 {
		t.Errorf("%d upstream GETs of the index and the image manifest; want 2", n)
	}
	// The tag, the index it names, and the image manifest.
	if n := metricSum(t, replica.metrics, "regmirror_cluster_forward_failures_total", nil); n != 3 {
		t.Errorf("%v forward failures counted; want 3", n)
	}
}

// tamperManifests makes a replica lie: the manifests it sends carry one
// more byte than they hash to, which still parses.
func tamperManifests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/manifests/") {
			next.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		body := append(rec.Body.Bytes(), '\n')
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(rec.Code)
		_, _ = w.Write(body)
	})
}

// A manifest whose bytes from the owner do not hash to their digest fails
// the request: it is neither stored nor served, and the tag is not moved
// to it.
func TestClusterRefusesAManifestALyingOwnerSends(t *testing.T) {
	t.Parallel()
	liar := newEnv(t, envOptions{wrap: func(h http.Handler) http.Handler { return trustPeers(tamperManifests(h)) }})
	ix := liar.pushNode(t, 1, 4096)
	replica := newEnv(t, envOptions{shared: liar.upstream, peers: &peerLink{owner: liar.mirror.URL}})

	for _, ref := range []string{"10", ix.Descriptor.Digest.String()} {
		got := replica.do(t, http.MethodGet, "/v2/library/node/manifests/"+ref, nil)
		if got.status != http.StatusBadGateway || !strings.Contains(string(got.body), "peer "+liar.mirror.URL) {
			t.Errorf("GET manifest %s = %d %s; want 502 naming the peer", ref, got.status, got.body)
		}
	}
	// The owner fetched it once; the replica did not fall back on the
	// upstream for bytes a peer lied about.
	if n := liar.upstream.ManifestGets("library/node", ix.Descriptor.Digest.String()); n != 1 {
		t.Errorf("%d upstream GETs of the index; want the owner's 1", n)
	}
	ctx := t.Context()
	if _, _, err := replica.store.Manifest(ctx, ix.Descriptor.Digest); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the lying owner's manifest: %v; want it not stored", err)
	}
	if _, _, err := replica.store.Tag(ctx, "docker.io/library/node", "10"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the tag: %v; want it not recorded", err)
	}
	if n := metricSum(t, replica.metrics, "regmirror_cluster_forward_failures_total", nil); n != 0 {
		t.Errorf("%v forward failures counted; a lie is not a failure to fall back on", n)
	}
}
