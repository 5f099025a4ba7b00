package upstream

import (
	"context"
	"fmt"
	"testing"

	"github.com/regmirror/regmirror/internal/registrytest"
)

// Anonymous clients invent repository names; each costs the mirror a
// handshake and, before, an authenticated transport kept forever. After
// many more invented names than the bound, the client keeps no more than
// the bound: the first name's token is gone (asking again fetches a new
// one), while a name used all along keeps its token.
func TestInventedRepositoriesDoNotGrowMemory(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t, registrytest.Options{})
	if _, err := reg.PushImage("org/kept", "1", registrytest.ImageOptions{Layers: 1, Seed: 2}); err != nil {
		t.Fatal(err)
	}
	c, _ := newClient(t, reg, Config{Retries: -1}, nil, Options{})
	ctx := context.Background()
	head := func(repo string) {
		t.Helper()
		if _, err := c.HeadManifest(ctx, repo, "1"); err != nil && statusOf(err) != 404 {
			t.Fatalf("HEAD %s: %v", repo, err)
		}
	}
	head("org/first")
	for i := range maxCachedTransports + 100 {
		head(fmt.Sprintf("invented/n%d", i))
		if i%100 == 0 {
			head("org/kept")
		}
	}
	if n := c.transports.len(); n > maxCachedTransports {
		t.Fatalf("the client keeps %d transports, more than its bound %d", n, maxCachedTransports)
	}
	head("org/first")
	head("org/kept")
	if n := reg.TokenRequests("repository:org/first:pull"); n != 2 {
		t.Fatalf("org/first: %d token requests, want 2: its transport should have been dropped", n)
	}
	if n := reg.TokenRequests("repository:org/kept:pull"); n != 1 {
		t.Fatalf("org/kept: %d token requests, want 1: a repository in use keeps its transport", n)
	}
}
