package mirror_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/regmirror/regmirror/cache/bucket"
	"github.com/regmirror/regmirror/cache/s3blobs"
	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/internal/s3test"
	"github.com/regmirror/regmirror/mirror"
)

func newTestBucket(t *testing.T) *bucket.Bucket {
	t.Helper()
	srv := s3test.Start(t)
	b, err := bucket.New(t.Context(), bucket.Options{Holder: "http://10.0.0.1:5000", LeaseTTL: time.Minute,
		Blobs: s3blobs.Options{Endpoint: "http://" + srv.Endpoint, Bucket: srv.NewBucket(t), Region: s3test.Region,
			AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey, SpoolDir: t.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A blob cached for a private repository, asked for by an anonymous client
// under a public repository, is confirmed with that repository's upstream
// once across the replicas: a replica that finds the confirmation in the
// bucket (another replica's upstream request proved it) serves it without
// asking again. A record for another repository confirms nothing.
func TestBucketConfirmationsAreShared(t *testing.T) {
	t.Parallel()
	shared := newTestBucket(t)
	e := newAttackEnvSharing(t, mirror.HostedOptions{Repositories: []string{"secret/**"}, PrivatePulls: true}, shared)
	opts := registrytest.ImageOptions{Layers: 2, LayerSize: 4096, Seed: 47}
	private, err := e.hub.PushIndex("library/node", "10", opts)
	if err != nil {
		t.Fatal(err)
	}
	e.pullAsUser(t, "library/node", private)
	layers := private.Images[0].Layers
	if len(layers) != 2 {
		t.Fatalf("%d layers, want 2", len(layers))
	}
	first, second := layers[0].Digest, layers[1].Digest
	// The public team/app holds the private image's layers too.
	if _, err := e.hub.PushIndex("team/app", "1", registrytest.ImageOptions{Layers: 1, LayerSize: 4096, Seed: 48}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []digest.Digest{first, second} {
		if err := e.hub.MountBlob("team/app", d); err != nil {
			t.Fatal(err)
		}
	}

	// A record for another repository confirms nothing: team/app's
	// upstream is asked, and the answer recorded.
	if err := shared.Link(t.Context(), "docker.io/team/other", first); err != nil {
		t.Fatal(err)
	}
	e.hub.Reset()
	if got := e.do(t, http.MethodGet, "/v2/team/app/blobs/"+first.String(), false); got.status != http.StatusOK {
		t.Fatalf("anonymous GET under team/app = %d %s", got.status, got.body)
	}
	if n := e.hub.BlobGets(first); n != 1 {
		t.Errorf("the confirmation made %d upstream GETs; want 1", n)
	}
	if linked, err := shared.Linked(t.Context(), "docker.io/team/app", first); err != nil || !linked {
		t.Errorf("the confirmation is not recorded in the bucket: %v, %v", linked, err)
	}

	// Another replica confirmed the second layer for team/app: this one
	// takes its word and asks the upstream nothing.
	if err := shared.Link(t.Context(), "docker.io/team/app", second); err != nil {
		t.Fatal(err)
	}
	e.hub.Reset()
	if got := e.do(t, http.MethodGet, "/v2/team/app/blobs/"+second.String(), false); got.status != http.StatusOK {
		t.Fatalf("anonymous GET under team/app = %d %s", got.status, got.body)
	}
	if n := e.hub.BlobGets(second); n != 0 {
		t.Errorf("a blob another replica confirmed made %d upstream GETs; want 0", n)
	}
}

// A logged-in client pulls a private upstream image through one replica,
// which copies its content to the shared bucket; the replica's own cache
// then loses it (evicted), so that only the bucket holds it, as for a
// replica that never pulled it. An anonymous client names those digests
// under a public repository of the same upstream, by HEAD and GET, with
// containerd's ns parameter and with host prefixes: every request is
// refused, the bucket read for no other repository than the one whose
// upstream sent the content. The logged-in client's pull, by contrast, is
// served from the bucket without the upstream: the bucket is live here.
func TestAttackPrivateContentInTheBucketThroughPublicRepository(t *testing.T) {
	t.Parallel()
	shared := newTestBucket(t)
	e := newAttackEnvSharing(t, mirror.HostedOptions{Repositories: []string{"secret/**"}, PrivatePulls: true}, shared)
	private, err := e.hub.PushIndex("library/node", "10", registrytest.ImageOptions{Layers: 2, LayerSize: 4096, Seed: 49})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.hub.PushIndex("team/app", "1", registrytest.ImageOptions{Layers: 1, LayerSize: 4096, Seed: 50}); err != nil {
		t.Fatal(err)
	}
	e.pullAsUser(t, "library/node", private)
	forgetLocally(t, e, private)

	var paths []string
	for _, p := range contentPaths("team/app", private) {
		paths = append(paths, "/v2/"+p, "/v2/"+p+"?ns=docker.io", "/v2/docker.io/"+p, "/v2/registry-1.docker.io/"+p)
	}
	e.assertRefused(t, paths)
	e.assertRefused(t, prefixed("/v2/", contentPaths("library/node", private)))

	e.hub.Reset()
	e.pullAsUser(t, "library/node", private)
	if n := e.hub.BlobGetsTotal(); n != 0 {
		t.Errorf("the logged-in pull after the eviction made %d upstream blob GETs; want 0: the bucket is not in use and the test proves nothing", n)
	}
}

// forgetLocally removes ix's manifests and blobs from e's cache, leaving
// the bucket's copies.
func forgetLocally(t *testing.T, e *attackEnv, ix registrytest.Index) {
	t.Helper()
	manifests := []digest.Digest{ix.Descriptor.Digest}
	var blobs []digest.Digest
	for _, img := range ix.Images {
		manifests = append(manifests, img.Manifest.Digest)
		for _, b := range img.Blobs() {
			blobs = append(blobs, b.Digest)
		}
	}
	// A download copies its blob to the bucket after its last byte: wait
	// for each to end, so that the bucket holds every blob and the cache
	// lets go of it.
	guard := time.Now().Add(time.Minute)
	for _, d := range blobs {
		for len(e.store.Downloading(d)) > 0 {
			if time.Now().After(guard) {
				t.Fatalf("blob %s still downloading after a minute", d)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if _, err := e.store.RemoveManifests(t.Context(), manifests, nil); err != nil {
		t.Fatal(err)
	}
	r, err := e.store.RemoveBlobs(t.Context(), blobs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Removed) != len(blobs) {
		t.Fatalf("removed %d of %d blobs from the cache: %+v", len(r.Removed), len(blobs), r)
	}
}
