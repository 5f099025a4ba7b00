package mirror_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/mirror"
)

// storeInventory is the store's inventory as the daemon hands it to the
// mirror (cmd/regmirror does the same, with pins).
type storeInventory struct{ store *cache.Store }

func (s storeInventory) Snapshot(ctx context.Context) (mirror.Snapshot, error) {
	inv, err := s.store.Inventory(ctx)
	if err != nil {
		return mirror.Snapshot{}, err
	}
	ref := func(repo string) mirror.RepoRef {
		if name, ok := cache.HostedName(repo); ok {
			return mirror.RepoRef{Name: name, Hosted: true}
		}
		return mirror.RepoRef{Name: repo}
	}
	snap := mirror.Snapshot{BlobSizes: map[digest.Digest]int64{}}
	for _, b := range inv.Blobs {
		snap.BlobSizes[b.Digest] = b.Size
	}
	for _, m := range inv.Manifests {
		sm := mirror.SnapshotManifest{Digest: m.Digest, MediaType: m.MediaType, Size: m.Size, LastPulled: m.LastAccess, Blobs: m.Blobs, Manifests: m.Manifests}
		for _, r := range m.Repos {
			sm.Repos = append(sm.Repos, ref(r))
		}
		snap.Manifests = append(snap.Manifests, sm)
	}
	for _, tag := range inv.Tags {
		snap.Tags = append(snap.Tags, mirror.SnapshotTag{Repo: ref(tag.Repo), Tag: tag.Tag, Digest: tag.Digest, FetchedAt: tag.FetchedAt})
	}
	return snap, nil
}

func (s storeInventory) CachedTags(ctx context.Context, repo string) ([]string, error) {
	return s.store.Tags(ctx, repo)
}

// A repository made private upstream leaves the anonymous catalog, search
// and API within the hour, as its content stops being served by digest:
// the inventory asks no upstream and trusts no visibility answer older
// than that.
func TestAttackInventoryFollowsUpstreamVisibility(t *testing.T) {
	t.Parallel()
	e := newAttackEnv(t)
	m, err := mirror.New(mirror.Options{
		Cache:     e.store,
		Remotes:   []mirror.Remote{e.remote(t, "docker.io", e.hub.URL(), true)},
		Now:       e.clock.Now,
		Inventory: storeInventory{e.store},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)
	ix, err := e.hub.PushIndex("team/app", "1", registrytest.ImageOptions{Layers: 1, LayerSize: 4096, Seed: 45})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range append([]string{"team/app/manifests/1"}, contentPaths("team/app", ix)...) {
		if got := roundTrip(t, srv, http.MethodGet, "/v2/"+p, nil, nil); got.status != http.StatusOK {
			t.Fatalf("anonymous GET %s of public content = %d %s", p, got.status, got.body)
		}
	}
	views := []struct {
		path       string
		listedWhen func(response) bool
	}{
		{"/v2/_catalog", func(r response) bool { return strings.Contains(string(r.body), `"team/app"`) }},
		{"/v1/search?q=app", func(r response) bool { return strings.Contains(string(r.body), `"team/app"`) }},
		{"/api/v1/repositories", func(r response) bool { return strings.Contains(string(r.body), `"team/app"`) }},
		{"/api/v1/repositories/team/app/tags", func(r response) bool { return r.status == http.StatusOK }},
		{"/api/v1/repositories/team/app/manifests/" + ix.Descriptor.Digest.String(), func(r response) bool { return r.status == http.StatusOK }},
	}
	for _, v := range views {
		if got := roundTrip(t, srv, http.MethodGet, v.path, nil, nil); !v.listedWhen(got) {
			t.Errorf("public team/app: GET %s = %d %s, want it listed", v.path, got.status, got.body)
		}
	}
	e.hubPrivate.Store(true)
	e.clock.Advance(2 * time.Hour)
	for _, v := range views {
		if got := roundTrip(t, srv, http.MethodGet, v.path, nil, nil); v.listedWhen(got) || strings.Contains(string(got.body), ix.Descriptor.Digest.Encoded()) {
			t.Errorf("team/app private upstream for 2 h: anonymous GET %s = %d %s, want it unknown", v.path, got.status, got.body)
		}
	}
}
