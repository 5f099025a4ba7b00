// Package bloblookup names what one read of a cache's index tells of a
// blob for a repository, and what can be done with it without reading the
// index again. The mirror asks it of the cache, which answers with its own
// type: both name this package's interface, so that neither imports the
// other.
package bloblookup

import (
	"context"
	"io"
)

// Lookup is one read of the index about one blob and one repository.
type Lookup interface {
	// Stored reports whether the blob is in the cache.
	Stored() bool
	// Linked reports whether the repository holds the stored blob.
	Linked() bool
	// Holders returns the repositories that hold a stored blob the
	// repository does not: cached ones by cache key, hosted ones by
	// hosted name.
	Holders() (cached, hosted []string)
	// Open opens the stored blob from offset, and returns its size. It
	// fails wrapping fs.ErrNotExist when the blob is not stored, or went
	// since the lookup.
	Open(ctx context.Context, offset int64) (io.ReadCloser, int64, error)
	// Fetch serves the blob to the repository from the cache, or
	// downloads it with fetch, as the cache's FetchBlob does; when the
	// lookup found it not stored, it starts or joins the download
	// without reading the index again.
	Fetch(ctx context.Context, offset int64, fetch Fetch) (rc io.ReadCloser, size int64, coalesced bool, err error)
}

// Fetch opens an upstream download of the blob from offset on: its body,
// where the body starts (offset, or 0 when the upstream sent the whole
// blob), and the blob's full size, -1 when unknown.
type Fetch = func(ctx context.Context, offset int64) (body io.ReadCloser, start, size int64, err error)
