//go:build nginx

package main

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/regmirror/regmirror/internal/nginxtest"
)

// Three replicas with hosted repositories behind nginx, which takes them
// in turn: go-containerregistry pushes images through nginx, its login,
// blob checks, uploads and manifest landing on any replica, for
// repositories owned by each of them; each image then pulls byte for
// byte the same from every replica directly and through nginx.
func TestClusterBehindNginxServesHostedRepositoriesFromAnyReplica(t *testing.T) {
	t.Parallel()
	c := startHostedCluster(t, 3)
	var addrs []string
	for _, u := range c.urls {
		addrs = append(addrs, strings.TrimPrefix(u, "http://"))
	}
	proxy := strings.TrimPrefix(nginxtest.Start(t, addrs...), "http://")
	auth := remote.WithAuth(authn.FromConfig(authn.AuthConfig{Username: "alice", Password: alicePassword}))

	pushed := map[string]v1.Image{}
	for owner := range c.urls {
		repo := c.repoOwnedBy("team-a", owner)
		img, err := random.Image(1<<20, 3)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(mustRef(t, proxy+"/"+repo+":1"), img, auth); err != nil {
			t.Fatalf("push %s through nginx: %v", repo, err)
		}
		pushed[repo] = img
	}
	for repo, img := range pushed {
		for _, base := range append(addrs, proxy) {
			got, err := remote.Image(mustRef(t, base+"/"+repo+":1"), auth)
			if err != nil {
				t.Fatalf("pull %s from %s: %v", repo, base, err)
			}
			assertSameImage(t, base+"/"+repo, got, img)
		}
	}
}

// assertSameImage compares the manifest and every layer of got, as read
// from the registry, with want's bytes.
func assertSameImage(t *testing.T, where string, got, want v1.Image) {
	t.Helper()
	gotManifest, err := got.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	wantManifest, err := want.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(gotManifest, wantManifest) {
		t.Errorf("%s: the manifest differs from the pushed one", where)
	}
	gotConfig, err := got.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	wantConfig, err := want.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(gotConfig, wantConfig) {
		t.Errorf("%s: the config differs from the pushed one", where)
	}
	wantLayers, err := want.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, wl := range wantLayers {
		d, err := wl.Digest()
		if err != nil {
			t.Fatal(err)
		}
		gl, err := got.LayerByDigest(d)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(readLayer(t, gl), readLayer(t, wl)) {
			t.Errorf("%s: layer %s differs from the pushed one", where, d)
		}
	}
}

func readLayer(t *testing.T, l v1.Layer) []byte {
	t.Helper()
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
