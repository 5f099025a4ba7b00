package admin

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/eviction"
	"github.com/regmirror/regmirror/mirror"
)

// ScanReuseFactor bounds how much of its time the daemon spends scanning
// the index for the pages and listings anyone may ask for: a result that
// took d to build is reused for ScanReuseFactor×d, so a small cache is
// always fresh and a huge one is scanned at most a few percent of the
// time, however many clients poll.
const ScanReuseFactor = 20

// Inventory lets the mirror list the store's content: the catalog, the
// v1 search, the repository API and cached tags while an upstream is down.
// Anyone may ask for the catalog, and each answer reads the whole index, so
// scans are rationed like the status page's: one at a time, and a snapshot
// that took d to read is reused for ScanReuseFactor×d. It is safe for
// concurrent use.
type Inventory struct {
	store *cache.Store
	// pins are cache.pin: their manifests count as pinned.
	pins eviction.Globs
	now  func() time.Time

	mu       sync.Mutex
	cached   mirror.Snapshot
	cachedAt time.Time
	took     time.Duration
}

// NewInventory returns the store's inventory for the mirror; pins are
// cache.pin, whose manifests count as pinned.
func NewInventory(store *cache.Store, pins eviction.Globs) *Inventory {
	return &Inventory{store: store, pins: pins, now: time.Now}
}

var _ mirror.Inventory = (*Inventory)(nil)

// Snapshot implements mirror.Inventory.
func (s *Inventory) Snapshot(ctx context.Context) (mirror.Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	start := s.now()
	if !s.cachedAt.IsZero() && start.Sub(s.cachedAt) < ScanReuseFactor*s.took {
		return s.cached, nil
	}
	snap, err := s.read(ctx)
	if err != nil {
		return mirror.Snapshot{}, err
	}
	s.cached, s.cachedAt, s.took = snap, start, s.now().Sub(start)
	return snap, nil
}

// read reads the whole index, every time.
func (s *Inventory) read(ctx context.Context) (mirror.Snapshot, error) {
	inv, err := s.store.Inventory(ctx)
	if err != nil {
		return mirror.Snapshot{}, err
	}
	return snapshotOf(inv, s.pins), nil
}

// CachedTags implements mirror.Inventory.
func (s *Inventory) CachedTags(ctx context.Context, repo string) ([]string, error) {
	tags, err := s.store.Tags(ctx, repo)
	if err != nil {
		return nil, fmt.Errorf("cached tags: %w", err)
	}
	return tags, nil
}

// snapshotOf turns the store's inventory into the mirror's view of it.
func snapshotOf(inv cache.Inventory, pins eviction.Globs) mirror.Snapshot {
	snap := mirror.Snapshot{BlobSizes: make(map[digest.Digest]int64, len(inv.Blobs))}
	for _, b := range inv.Blobs {
		snap.BlobSizes[b.Digest] = b.Size
	}
	for _, man := range inv.Manifests {
		refs := make([]mirror.RepoRef, len(man.Repos))
		hosted := false
		for i, repo := range man.Repos {
			refs[i] = repoRef(repo)
			hosted = hosted || refs[i].Hosted
		}
		snap.Manifests = append(snap.Manifests, mirror.SnapshotManifest{
			Digest: man.Digest, MediaType: man.MediaType, Size: man.Size, LastPulled: man.LastAccess,
			// Hosted content is always kept; pinned says more only of cached content.
			Pinned: (man.Kept && !hosted) || pins.MatchAny(man.Repos), Repos: refs, Blobs: man.Blobs, Manifests: man.Manifests,
		})
	}
	for _, t := range inv.Tags {
		snap.Tags = append(snap.Tags, mirror.SnapshotTag{Repo: repoRef(t.Repo), Tag: t.Tag, Digest: t.Digest, FetchedAt: t.FetchedAt})
	}
	return snap
}

func repoRef(repo string) mirror.RepoRef {
	if name, ok := cache.HostedName(repo); ok {
		return mirror.RepoRef{Name: name, Hosted: true}
	}
	return mirror.RepoRef{Name: repo}
}
