//go:build e2e

package e2e_test

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/scripts/e2e"
)

// TestDockerSearchFindsHostedAndCachedRepositories: `docker search
// MIRROR/node` through a real dockerd lists, by name, the Docker Hub
// repository the mirror cached (library/node) and the hosted one pushed to
// it (team/node-tools), and nothing the mirror does not hold.
func TestDockerSearchFindsHostedAndCachedRepositories(t *testing.T) {
	hub := registrytest.New(t, registrytest.Options{Username: hubUser, Password: hubPassword, Private: []string{"library/*"}})
	for _, repo := range []string{"library/node", "library/redis"} {
		if _, err := hub.PushIndex(repo, "10", registrytest.ImageOptions{Layers: 1, LayerSize: 64 << 10, Seed: 14}); err != nil {
			t.Fatal(err)
		}
	}
	mirrorURL := startHostedRegmirror(t, hub.URL())
	mirrorHost := strings.TrimPrefix(mirrorURL, "http://")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()

	d := e2e.StartDockerd(t, mirrorURL)
	pull(ctx, t, d, "node:10") // cached through the mirror; redis never asked for
	image := mirrorHost + "/team/node-tools:1"
	if out, err := d.DockerInput(ctx, bytes.NewReader(tinyRootfs(t)), "import", "-", image); err != nil {
		t.Fatalf("docker import: %v\n%s", err, out)
	}
	if out, err := d.DockerInput(ctx, strings.NewReader(pushPassword+"\n"),
		"login", mirrorHost, "--username", pushUser, "--password-stdin"); err != nil {
		t.Fatalf("docker login: %v\n%s", err, out)
	}
	if out, err := d.Docker(ctx, "push", image); err != nil {
		t.Fatalf("docker push: %v\n%s", err, out)
	}

	tests := []struct {
		term string
		want []string
	}{
		{"node", []string{"library/node", "team/node-tools"}},
		{"tools", []string{"team/node-tools"}},
		{"redis", nil},
	}
	for _, tt := range tests {
		out, err := d.Docker(ctx, "search", "--no-trunc", "--format", "{{.Name}}", mirrorHost+"/"+tt.term)
		if err != nil {
			t.Fatalf("docker search %s/%s: %v\n%s", mirrorHost, tt.term, err, out)
		}
		got := strings.Fields(out)
		slices.Sort(got)
		if !slices.Equal(got, tt.want) {
			t.Errorf("docker search %s/%s = %q, want %q", mirrorHost, tt.term, got, tt.want)
		}
	}
}
