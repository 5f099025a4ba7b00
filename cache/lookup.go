package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/cache/index"
	"github.com/regmirror/regmirror/internal/bloblookup"
)

// BlobLookup is what one read of the index tells of a blob for a cached
// repository: whether it is stored, whether the repository holds it and,
// when it does not, which repositories do. Its Open and Fetch act
// on it without reading the index again, so that a pull costs one index
// read whether it hits or misses. It implements bloblookup.Lookup.
type BlobLookup struct {
	s      *Store
	digest digest.Digest
	repo   string
	stored bool
	row    blobRow
	linked bool
	cached []string // holders other than repo, by cache key
	hosted []string // hosted holders, by hosted name
	// absent is what finding no row tells (see Store.lookupAbsence).
	absent absence
}

// Stored reports whether the blob is in the cache.
func (l *BlobLookup) Stored() bool { return l.stored }

// Linked reports whether the repository holds the stored blob.
func (l *BlobLookup) Linked() bool { return l.linked }

// Holders returns the repositories that hold a stored blob the repository
// does not: cached ones by cache key, hosted ones by hosted name.
func (l *BlobLookup) Holders() (cached, hosted []string) { return l.cached, l.hosted }

// LookupBlob reads, in one snapshot of the index, what BlobLookup tells of
// blob d for the cached repository repo ("<host>/<path>").
func (s *Store) LookupBlob(ctx context.Context, repo string, d digest.Digest) (bloblookup.Lookup, error) {
	if err := checkDigest(d); err != nil {
		return nil, fmt.Errorf("look up blob: %w", err)
	}
	if err := checkName("repository", repo); err != nil {
		return nil, fmt.Errorf("look up blob: %w", err)
	}
	l := &BlobLookup{s: s, digest: d, repo: repo, absent: s.lookupAbsence()}
	err := s.db.View(ctx, func(r index.Reader) error { return l.read(ctx, r) })
	if err != nil {
		return nil, fmt.Errorf("look up blob %s for %s: %w", d, repo, err)
	}
	return l, nil
}

// read fills l from one snapshot: the blob's row, then its link to the
// repository, then, only when it has none, the blob's other holders.
func (l *BlobLookup) read(ctx context.Context, r index.Reader) error {
	v, err := r.Get(blobKey(l.digest))
	if errors.Is(err, index.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if l.row, err = unmarshalBlobRow(v); err != nil {
		return err
	}
	l.stored = true
	if l.linked, err = r.Has(usedByKey(l.digest, l.repo)); err != nil || l.linked {
		return err
	}
	prefix := prefixUsedBy + string(l.digest) + fieldSep
	return r.ScanKeys(ctx, []byte(prefix), func(kv index.Row) error {
		holder := string(kv.Key[len(prefix):])
		if name, ok := strings.CutPrefix(holder, hostedPrefix); ok {
			l.hosted = append(l.hosted, name)
		} else {
			l.cached = append(l.cached, holder)
		}
		return nil
	})
}

var _ bloblookup.Lookup = (*BlobLookup)(nil)

// Open opens the blob the lookup found stored, from offset, as ReadBlob
// does, without reading the index again. It fails wrapping fs.ErrNotExist
// when the lookup found no blob, or the blob went since.
func (l *BlobLookup) Open(ctx context.Context, offset int64) (io.ReadCloser, int64, error) {
	s := l.s
	if !l.stored {
		return nil, 0, fmt.Errorf("read blob %s: %w", l.digest, fs.ErrNotExist)
	}
	if _, ok := s.uses.acquire(l.digest); !ok {
		return nil, 0, errRemoving(l.digest)
	}
	f, size, err := s.openRow(ctx, l.digest, l.row, offset)
	if err != nil {
		s.uses.release(l.digest)
		return nil, 0, err
	}
	return s.registered(f, l.digest), size, nil
}

// Fetch is FetchBlob for the lookup's repository and blob. When the lookup
// found the blob not stored, it starts or joins the download without
// looking in the index again, unless a blob row may have been added since.
func (l *BlobLookup) Fetch(ctx context.Context, offset int64, fetch bloblookup.Fetch) (rc io.ReadCloser, size int64, coalesced bool, err error) {
	s := l.s
	if l.stored {
		return s.FetchBlob(ctx, l.repo, l.digest, offset, fetch)
	}
	if offset < 0 {
		return nil, 0, false, fmt.Errorf("fetch blob %s at %d: %w", l.digest, offset, ErrInvalidOffset)
	}
	return s.fetch(ctx, l.repo, l.digest, offset, fetch, l.absent)
}
