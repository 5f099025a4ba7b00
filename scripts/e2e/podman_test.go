//go:build e2e

package e2e_test

import (
	"context"
	"testing"
	"time"

	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/scripts/e2e"
)

// TestPodmanPullsThroughRegmirror is the containers-registries.conf
// promise with a real podman: configured only by the documented
// registries.conf, it pulls docker.io and ghcr.io images through one
// regmirror in front of two upstreams with their own credentials. In the
// loopback-only namespace, podman's fallback to the real registries fails,
// so every pull that succeeds came through the mirror.
func TestPodmanPullsThroughRegmirror(t *testing.T) {
	hub := registrytest.New(t, registrytest.Options{Username: hubUser, Password: hubPassword, Private: []string{"library/*"}})
	ghcr := registrytest.New(t, registrytest.Options{Username: ghcrUser, Password: ghcrPassword, Private: []string{"org/*"}})
	node := push(t, hub, "library/node", "10", 10)
	app := push(t, ghcr, "org/app", "1", 2)
	hub.Reset()
	ghcr.Reset()

	mirrorURL := startRegmirror(t,
		upstreamSpec{host: "docker.io", url: hub.URL(), user: hubUser, password: hubPassword},
		upstreamSpec{host: "ghcr.io", url: ghcr.URL(), user: ghcrUser, password: ghcrPassword})
	p := e2e.NewPodman(t, e2e.WriteRegistriesConf(t, mirrorURL))
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()

	pulls := []struct {
		ref      string
		upstream *registrytest.Registry
		want     registrytest.Index
	}{
		{"docker.io/library/node:10", hub, node},
		{"ghcr.io/org/app:1", ghcr, app},
	}
	for _, pl := range pulls {
		start := time.Now()
		if out, err := p.Pull(ctx, pl.ref); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		t.Logf("podman pull %s took %v", pl.ref, time.Since(start).Round(time.Millisecond))
		amd64 := pl.want.Images[0]
		id, err := p.Podman(ctx, "image", "inspect", "--format", "{{.Id}}", pl.ref)
		if err != nil {
			t.Fatal(err)
		}
		if id != amd64.Config.Digest.Encoded() {
			t.Fatalf("%s: image ID = %s, want the linux/amd64 config digest %s", pl.ref, id, amd64.Config.Digest)
		}
		for _, b := range amd64.Blobs() {
			if n := pl.upstream.BlobGets(b.Digest); n != 1 {
				t.Errorf("%s: %d upstream GETs of %s, want 1", pl.ref, n, b.Digest)
			}
		}
		for _, b := range pl.want.Images[1].Blobs() { // linux/arm64
			if n := pl.upstream.BlobGets(b.Digest); n != 0 {
				t.Errorf("%s: fetched arm64 blob %s %d times", pl.ref, b.Digest, n)
			}
		}
	}
}
