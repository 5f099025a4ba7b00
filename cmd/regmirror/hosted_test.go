package main

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
	"golang.org/x/crypto/bcrypt"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/credentials"
	"github.com/regmirror/regmirror/eviction"
	"github.com/regmirror/regmirror/internal/admin"
	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/internal/testclock"
	"github.com/regmirror/regmirror/mirror"
	"github.com/regmirror/regmirror/upstream"
)

// TestHostedContentSurvivesEviction: an eviction pass with a budget of
// nothing removes every proxied blob and not one pushed blob, including a
// layer that was pulled through the mirror first and then pushed (stored
// once, kept because a hosted repository holds it). The pushed images still
// pull with the upstream gone.
func TestHostedContentSurvivesEviction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	hub := registrytest.New(t, registrytest.Options{})
	clk := testclock.New(time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC))
	store, err := cache.Open(ctx, cache.Options{Dir: t.TempDir(), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	hosted, err := store.Hosted(cache.HostedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(newHostedMirror(t, store, hosted, hub.URL(), clk))
	t.Cleanup(srv.Close)
	base := strings.TrimPrefix(srv.URL, "http://")

	proxied, err := hub.PushImage("library/old", "1", registrytest.ImageOptions{Layers: 2, LayerSize: 4096, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hub.PushImage("library/base", "1", registrytest.ImageOptions{Layers: 2, LayerSize: 4096, Seed: 2}); err != nil {
		t.Fatal(err)
	}
	pullImage(t, srv.URL, "library/old", "1")
	pullImage(t, srv.URL, "library/base", "1")

	// team/base is library/base pushed back: its blobs are cached already,
	// so the client skips uploading them and they are stored once.
	base1, err := remote.Image(mustRef(t, base+"/library/base:1"))
	if err != nil {
		t.Fatal(err)
	}
	pushTo(t, mustRef(t, base+"/team/base:1"), base1)
	app, err := random.Image(4096, 2)
	if err != nil {
		t.Fatal(err)
	}
	pushTo(t, mustRef(t, base+"/team/app:1"), app)

	ev, err := eviction.New(admin.EvictionCache{Store: store}, eviction.Config{MaxSize: 1}, eviction.Options{})
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour)
	pass, err := ev.Evict(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range proxied.Blobs() {
		if rc, _, err := store.ReadBlob(ctx, b.Digest, 0); !errors.Is(err, fs.ErrNotExist) {
			if err == nil {
				rc.Close()
			}
			t.Errorf("proxied blob %s survived a pass with no budget (err %v)", b.Digest, err)
		}
	}
	// library/old's manifest goes too; library/base's is team/base's, kept.
	if want := len(proxied.Blobs()) + 1; pass.Removed != want {
		t.Errorf("the pass removed %d blobs and manifests, want the %d proxied ones only", pass.Removed, want)
	}

	hub.Close()
	for _, ref := range []string{"team/base:1", "team/app:1"} {
		img, err := remote.Image(mustRef(t, base+"/"+ref))
		if err != nil {
			t.Fatalf("pull %s after eviction: %v", ref, err)
		}
		readAllLayers(t, ref, img)
	}
	if d := mustDigest(t, app); !isHosted(t, hosted, d) {
		t.Errorf("pushed manifest %s is not marked hosted", d)
	}
}

func newHostedMirror(t *testing.T, store *cache.Store, hosted *cache.Hosted, hubURL string, clk *testclock.Clock) *mirror.Mirror {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	users, err := mirror.ParseHtpasswd(strings.NewReader("ci:" + string(hash)))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := credentials.New(credentials.Config{})
	if err != nil {
		t.Fatal(err)
	}
	client, err := upstream.New(upstream.Config{Host: "docker.io", URL: hubURL}, keys, upstream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := mirror.New(mirror.Options{
		Cache:   store,
		Remotes: []mirror.Remote{{Host: "docker.io", Upstream: client}},
		Now:     clk.Now,
		Hosted:  &mirror.HostedOptions{Store: hosted, Users: users, Repositories: []string{"team/*"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

func pushTo(t *testing.T, ref name.Reference, img v1.Image) {
	t.Helper()
	auth := authn.FromConfig(authn.AuthConfig{Username: "ci", Password: "pw"})
	if err := remote.Write(ref, img, remote.WithAuth(auth)); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

func readAllLayers(t *testing.T, ref string, img v1.Image) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		_, err = io.Copy(io.Discard, rc)
		if cerr := rc.Close(); err == nil {
			err = cerr // Close verifies the digest
		}
		if err != nil {
			t.Fatalf("%s: layer: %v", ref, err)
		}
	}
}

func mustDigest(t *testing.T, img v1.Image) digest.Digest {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return digest.Digest(d.String())
}

func isHosted(t *testing.T, h *cache.Hosted, d digest.Digest) bool {
	t.Helper()
	ok, err := h.IsHosted(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}
