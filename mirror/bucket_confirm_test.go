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
