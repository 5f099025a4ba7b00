//go:build e2e

package e2e_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/scripts/e2e"
)

// TestDockerPullsOtherRegistriesByHostPrefix: dockerd mirrors only Docker
// Hub, so other registries are pulled through regmirror by naming it as
// the registry and the real one as the first path component:
// `docker pull MIRROR/ghcr.io/org/app:1`.
func TestDockerPullsOtherRegistriesByHostPrefix(t *testing.T) {
	hub := registrytest.New(t, registrytest.Options{Username: hubUser, Password: hubPassword, Private: []string{"org/*"}})
	ghcr := registrytest.New(t, registrytest.Options{Username: ghcrUser, Password: ghcrPassword, Private: []string{"org/*"}})
	push(t, hub, "org/app", "1", 1)
	ghcrApp := push(t, ghcr, "org/app", "1", 2)
	hub.Reset()
	ghcr.Reset()

	mirrorURL := startRegmirror(t,
		upstreamSpec{host: "docker.io", url: hub.URL(), user: hubUser, password: hubPassword},
		upstreamSpec{host: "ghcr.io", url: ghcr.URL(), user: ghcrUser, password: ghcrPassword})
	mirror, err := url.Parse(mirrorURL)
	if err != nil {
		t.Fatal(err)
	}
	d := e2e.StartDockerd(t, mirrorURL)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()

	ref := mirror.Host + "/ghcr.io/org/app:1"
	pull(ctx, t, d, ref)
	amd64 := ghcrApp.Images[0]
	if id := inspect(ctx, t, d, ref, "{{.Id}}"); id != amd64.Config.Digest.String() {
		t.Fatalf("image ID = %s, want ghcr.io's linux/amd64 config %s", id, amd64.Config.Digest)
	}
	for _, b := range amd64.Blobs() {
		if n := ghcr.BlobGets(b.Digest); n != 1 {
			t.Errorf("%d upstream GETs of %s, want 1", n, b.Digest)
		}
	}
	if reqs := hub.Requests(); len(reqs) != 0 {
		t.Errorf("docker.io got %d requests for a ghcr.io pull: %+v", len(reqs), reqs)
	}
}
