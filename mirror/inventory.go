package mirror

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/internal/ociserver"
)

// The inventory: what the store holds, as clients may see it. The catalog,
// the v1 search and the repository API (api.go) list only repositories the
// asking client may read: cached ones when mayReadCached says so (public
// upstream by a recent answer, exposed, or a logged-in client), hosted ones
// with pull permission. Nothing here asks an upstream.

// Inventory is what the mirror needs from the store to list its content.
type Inventory interface {
	// Snapshot reads everything the store holds in one consistent view.
	Snapshot(ctx context.Context) (Snapshot, error)
	// CachedTags lists the cached tags of the cached repository repo
	// ("<host>/<path>") in lexical order; none is not an error.
	CachedTags(ctx context.Context, repo string) ([]string, error)
}

// RepoRef names a repository in the store: a cached one by its cache key
// ("docker.io/library/node"), a hosted one by its hosted name ("team/app").
type RepoRef struct {
	Name   string
	Hosted bool
}

// Snapshot is the store's content at one moment.
type Snapshot struct {
	Manifests []SnapshotManifest
	Tags      []SnapshotTag
	// BlobSizes are the sizes of the stored blobs.
	BlobSizes map[digest.Digest]int64
}

// SnapshotManifest is one stored manifest.
type SnapshotManifest struct {
	Digest    digest.Digest
	MediaType string
	Size      int64
	// LastPulled is when the manifest was last read (or stored).
	LastPulled time.Time
	// Pinned means eviction never removes it.
	Pinned bool
	// Repos are the repositories that hold it.
	Repos []RepoRef
	// Blobs and Manifests are the content it names.
	Blobs, Manifests []digest.Digest
}

// SnapshotTag is one stored tag.
type SnapshotTag struct {
	Repo   RepoRef
	Tag    string
	Digest digest.Digest
	// FetchedAt is when the upstream last confirmed the tag; a push's time
	// for hosted tags.
	FetchedAt time.Time
}

// errNoInventory answers inventory requests of a mirror made without one.
var errNoInventory = newError(ociserver.CodeUnsupported, "this mirror keeps no inventory")

// browser describes the store's content as the client may see it.
func (m *Mirror) browser(ctx context.Context) Browser {
	return Browser{Content: m.cache, DefaultHost: m.defaultHost, MayRead: func(ref RepoRef) bool { return m.mayRead(ctx, ref) }}
}

// mayRead reports whether the client may read the stored repository.
func (m *Mirror) mayRead(ctx context.Context, ref RepoRef) bool {
	if ref.Hosted {
		return m.mayPullHosted(ctx, ref.Name)
	}
	return m.mayReadCached(ctx, ref.Name)
}

// snapshot reads the store's inventory.
func (m *Mirror) snapshot(ctx context.Context) (Snapshot, error) {
	if m.inventory == nil {
		return Snapshot{}, errNoInventory
	}
	snap, err := m.inventory.Snapshot(ctx)
	if err != nil {
		return Snapshot{}, fmt.Errorf("reading the inventory: %w", err)
	}
	return snap, nil
}

// catalog lists the repositories the client may read, hosted and cached,
// as the inventory knows them.
func (m *Mirror) catalog(ctx context.Context) ([]string, error) {
	snap, err := m.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	repos := m.browser(ctx).repos(snap)
	names := make([]string, len(repos))
	for i, s := range repos {
		names[i] = s.name
	}
	return names, nil
}

// cachedTagsFallback lists the cached tags of t when its upstream could not
// list them; it reports false when the upstream's failure is an answer
// (the repository is unknown or refused there) or nothing is cached.
func (m *Mirror) cachedTagsFallback(ctx context.Context, t target, upstreamErr error) ([]string, bool) {
	if m.inventory == nil || !upstreamUnreachable(upstreamErr) {
		return nil, false
	}
	tags, err := m.inventory.CachedTags(ctx, t.cacheKey())
	if err != nil {
		m.log.WarnContext(ctx, "listing cached tags", "repository", t.cacheKey(), "error", err)
		return nil, false
	}
	return tags, len(tags) > 0
}

// upstreamUnreachable reports whether err means the upstream could not
// answer (no connection, a server error, a rate limit, an open breaker)
// rather than answered no.
func upstreamUnreachable(err error) bool {
	var mirrorErr *Error
	if errors.Is(err, context.Canceled) || errors.As(err, &mirrorErr) {
		return false // the client left, or the mirror itself refused
	}
	switch status := upstreamStatus(err); {
	case status == 0:
		return true
	case status == http.StatusTooManyRequests, status >= 500:
		return true
	}
	return false
}
