//go:build e2e

package e2e_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/scripts/e2e"
)

// Credentials of the in-process ghcr.io: org/* needs them.
const (
	ghcrUser     = "ghcr-bot"
	ghcrPassword = "e2e-ghcr-token"
)

// TestContainerdPullsThroughRegmirror is the multi-registry promise with a
// real containerd: configured only by the documented hosts.toml files (no
// server line), it pulls docker.io and ghcr.io images through one
// regmirror in front of two upstreams with their own credentials, and
// org/app on each registry stays that registry's own. In the loopback-only
// namespace, containerd's fallback to the real registries fails, so every
// pull that succeeds came through the mirror.
func TestContainerdPullsThroughRegmirror(t *testing.T) {
	hub := registrytest.New(t, registrytest.Options{Username: hubUser, Password: hubPassword, Private: []string{"library/*", "org/*"}})
	ghcr := registrytest.New(t, registrytest.Options{Username: ghcrUser, Password: ghcrPassword, Private: []string{"org/*"}})
	node := push(t, hub, "library/node", "10", 10)
	hubApp := push(t, hub, "org/app", "1", 1)
	ghcrApp := push(t, ghcr, "org/app", "1", 2)
	hub.Reset()
	ghcr.Reset()

	mirrorURL := startRegmirror(t,
		upstreamSpec{host: "docker.io", url: hub.URL(), user: hubUser, password: hubPassword},
		upstreamSpec{host: "ghcr.io", url: ghcr.URL(), user: ghcrUser, password: ghcrPassword})
	hostsDir := e2e.WriteHostsDir(t, mirrorURL, "docker.io", "ghcr.io")
	c := e2e.StartContainerd(t)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()

	pulls := []struct {
		ref      string
		upstream *registrytest.Registry
		want     registrytest.Index
	}{
		{"docker.io/library/node:10", hub, node},
		{"ghcr.io/org/app:1", ghcr, ghcrApp},
		{"docker.io/org/app:1", hub, hubApp},
	}
	for _, p := range pulls {
		ctrPull(ctx, t, c, hostsDir, p.ref)
		target, err := c.ImageTarget(ctx, p.ref)
		if err != nil {
			t.Fatal(err)
		}
		if target != p.want.Descriptor.Digest.String() {
			t.Fatalf("%s points to %s, want its own registry's index %s", p.ref, target, p.want.Descriptor.Digest)
		}
		for _, b := range p.want.Images[0].Blobs() { // linux/amd64
			if n := p.upstream.BlobGets(b.Digest); n != 1 {
				t.Errorf("%s: %d upstream GETs of %s, want 1", p.ref, n, b.Digest)
			}
		}
		for _, b := range p.want.Images[1].Blobs() { // linux/arm64
			if n := p.upstream.BlobGets(b.Digest); n != 0 {
				t.Errorf("%s: fetched arm64 blob %s %d times", p.ref, b.Digest, n)
			}
		}
	}
	// Nothing meant for one registry reached the other.
	if n := ghcr.CountRequests(func(r registrytest.Request) bool { return strings.Contains(r.Path, "/library/") }); n != 0 {
		t.Errorf("ghcr.io got %d requests for library/ repositories", n)
	}
	if n := hub.ManifestGets("org/app", ghcrApp.Descriptor.Digest.String()); n != 0 {
		t.Errorf("docker.io was asked for ghcr.io's org/app index %d times", n)
	}
	// Tags were resolved with HEAD, never a counted GET.
	for name, reg := range map[string]*registrytest.Registry{"docker.io": hub, "ghcr.io": ghcr} {
		gets := reg.CountRequests(func(r registrytest.Request) bool {
			return r.Method == http.MethodGet && strings.Contains(r.Path, "/manifests/") && !strings.Contains(r.Path, "sha256:")
		})
		if gets != 0 {
			t.Errorf("%s: %d manifest GETs by tag, want 0", name, gets)
		}
	}
}

func push(t *testing.T, reg *registrytest.Registry, repo, tag string, seed uint64) registrytest.Index {
	t.Helper()
	ix, err := reg.PushIndex(repo, tag, registrytest.ImageOptions{Layers: 2, LayerSize: 1 << 20, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func ctrPull(ctx context.Context, t *testing.T, c *e2e.Containerd, hostsDir, ref string) {
	t.Helper()
	start := time.Now()
	out, err := c.Ctr(ctx, "images", "pull", "--hosts-dir", hostsDir, "--snapshotter", e2e.Snapshotter,
		"--platform", "linux/amd64", ref)
	if err != nil {
		t.Fatalf("ctr images pull %s: %v\n%s", ref, err, out)
	}
	t.Logf("ctr images pull %s took %v", ref, time.Since(start).Round(time.Millisecond))
}
