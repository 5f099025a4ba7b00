package cache

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/cache/index"
)

// accessBatch collects what the read path learns, last access times and
// which repositories use a blob, so that serving a hit costs a map write
// instead of an index transaction. FlushAccess writes it out.
type accessBatch struct {
	mu        sync.Mutex
	touched   map[digest.Digest]time.Time // blobs
	manifests map[digest.Digest]time.Time
	refs      map[reference]struct{}
}

// reference says that repo uses the content d.
type reference struct {
	repo string
	d    digest.Digest
	kind contentKind
}

func (b *accessBatch) touch(d digest.Digest, at time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.touched = later(b.touched, d, at)
}

func (b *accessBatch) touchManifest(d digest.Digest, at time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.manifests = later(b.manifests, d, at)
}

// later records at as m[d] unless m[d] is later already, allocating m on
// first use.
func later(m map[digest.Digest]time.Time, d digest.Digest, at time.Time) map[digest.Digest]time.Time {
	if m == nil {
		m = make(map[digest.Digest]time.Time)
	}
	if at.After(m[d]) {
		m[d] = at
	}
	return m
}

// pending returns the unflushed access time of the blob d, if any.
func (b *accessBatch) pending(d digest.Digest) (time.Time, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	at, ok := b.touched[d]
	return at, ok
}

// pendingManifest returns the unflushed access time of the manifest d, if any.
func (b *accessBatch) pendingManifest(d digest.Digest) (time.Time, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	at, ok := b.manifests[d]
	return at, ok
}

func (b *accessBatch) addRef(ref reference) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.refs == nil {
		b.refs = make(map[reference]struct{})
	}
	b.refs[ref] = struct{}{}
}

// accessSnapshot is what one flush writes.
type accessSnapshot struct {
	touched   map[digest.Digest]time.Time
	manifests map[digest.Digest]time.Time
	refs      map[reference]struct{}
}

// take empties the batch and returns what it held.
func (b *accessBatch) take() accessSnapshot {
	b.mu.Lock()
	defer b.mu.Unlock()
	snap := accessSnapshot{touched: b.touched, manifests: b.manifests, refs: b.refs}
	b.touched, b.manifests, b.refs = nil, nil, nil
	return snap
}

// putBack returns entries that could not be written, for the next flush.
func (b *accessBatch) putBack(snap accessSnapshot) {
	for d, at := range snap.touched {
		b.touch(d, at)
	}
	for d, at := range snap.manifests {
		b.touchManifest(d, at)
	}
	for ref := range snap.refs {
		b.addRef(ref)
	}
}

// flushChunk bounds the rows written per transaction, well below Badger's
// batch limit.
const flushChunk = 256

// FlushAccess writes the batched access times and repository references to
// the index. Run calls it periodically and Close once more at the end.
func (s *Store) FlushAccess(ctx context.Context) error {
	snap := s.access.take()
	if err := s.writeAccess(ctx, snap); err != nil {
		s.access.putBack(snap)
		return fmt.Errorf("flush access times: %w", err)
	}
	return nil
}

func (s *Store) writeAccess(ctx context.Context, snap accessSnapshot) error {
	touched := snap.touched
	digests := slices.Collect(maps.Keys(touched))
	for len(digests) > 0 {
		chunk := digests[:min(flushChunk, len(digests))]
		digests = digests[len(chunk):]
		if err := s.db.Update(ctx, func(txn index.Txn) error { return touchBlobs(txn, chunk, touched) }); err != nil {
			return err
		}
	}
	manifests := slices.Collect(maps.Keys(snap.manifests))
	for len(manifests) > 0 {
		chunk := manifests[:min(flushChunk, len(manifests))]
		manifests = manifests[len(chunk):]
		if err := s.db.Update(ctx, func(txn index.Txn) error { return touchManifests(txn, chunk, snap.manifests) }); err != nil {
			return err
		}
	}
	refs := snap.refs
	pending := slices.Collect(maps.Keys(refs))
	for len(pending) > 0 {
		chunk := pending[:min(flushChunk, len(pending))]
		pending = pending[len(chunk):]
		if err := s.db.Update(ctx, func(txn index.Txn) error { return addReferences(txn, chunk) }); err != nil {
			return err
		}
	}
	return nil
}

// touchBlobs moves the last access time of each indexed blob forward.
func touchBlobs(txn index.Txn, digests []digest.Digest, at map[digest.Digest]time.Time) error {
	for _, d := range digests {
		v, err := getValue(txn, blobKey(d))
		if errors.Is(err, fs.ErrNotExist) {
			continue // evicted or dropped since it was read
		}
		if err != nil {
			return err
		}
		row, err := unmarshalBlobRow(v)
		if err != nil {
			return err
		}
		if !at[d].After(row.LastAccess) {
			continue
		}
		row.LastAccess = at[d]
		if err := txn.Set(blobKey(d), row.marshal()); err != nil {
			return err
		}
	}
	return nil
}

// touchManifests records the last access time of each indexed manifest.
func touchManifests(txn index.Txn, digests []digest.Digest, at map[digest.Digest]time.Time) error {
	for _, d := range digests {
		found, err := txn.Has(manifestKey(d))
		if err != nil {
			return err
		}
		if !found {
			continue // pruned since it was read
		}
		if err := txn.Set(manifestAccessKey(d), appendTime(nil, at[d])); err != nil {
			return err
		}
	}
	return nil
}

// addReferences records references whose content is still indexed.
func addReferences(txn index.Txn, refs []reference) error {
	for _, ref := range refs {
		found, err := txn.Has(contentKey(ref.kind, ref.d))
		if err != nil {
			return err
		}
		if !found {
			continue
		}
		if known, err := txn.Has(usedByKey(ref.d, ref.repo)); known && err == nil {
			continue // already known: skip the write
		}
		if err := setReference(txn, ref.repo, ref.d, ref.kind); err != nil {
			return err
		}
	}
	return nil
}
