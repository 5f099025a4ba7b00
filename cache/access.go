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

	"github.com/dgraph-io/badger/v4"
	"github.com/opencontainers/go-digest"
)

// accessBatch collects what the read path learns, last access times and
// which repositories use a blob, so that serving a hit costs a map write
// instead of an index transaction. FlushAccess writes it out.
type accessBatch struct {
	mu      sync.Mutex
	touched map[digest.Digest]time.Time
	refs    map[reference]struct{}
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
	if b.touched == nil {
		b.touched = make(map[digest.Digest]time.Time)
	}
	if at.After(b.touched[d]) {
		b.touched[d] = at
	}
}

func (b *accessBatch) addRef(ref reference) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.refs == nil {
		b.refs = make(map[reference]struct{})
	}
	b.refs[ref] = struct{}{}
}

// take empties the batch and returns what it held.
func (b *accessBatch) take() (map[digest.Digest]time.Time, map[reference]struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	touched, refs := b.touched, b.refs
	b.touched, b.refs = nil, nil
	return touched, refs
}

// putBack returns entries that could not be written, for the next flush.
func (b *accessBatch) putBack(touched map[digest.Digest]time.Time, refs map[reference]struct{}) {
	for d, at := range touched {
		b.touch(d, at)
	}
	for ref := range refs {
		b.addRef(ref)
	}
}

// flushChunk bounds the rows written per transaction, well below Badger's
// batch limit.
const flushChunk = 256

// FlushAccess writes the batched access times and repository references to
// the index. Run calls it periodically and Close once more at the end.
func (s *Store) FlushAccess(ctx context.Context) error {
	touched, refs := s.access.take()
	if err := s.writeAccess(ctx, touched, refs); err != nil {
		s.access.putBack(touched, refs)
		return fmt.Errorf("flush access times: %w", err)
	}
	return nil
}

func (s *Store) writeAccess(ctx context.Context, touched map[digest.Digest]time.Time, refs map[reference]struct{}) error {
	digests := slices.Collect(maps.Keys(touched))
	for len(digests) > 0 {
		chunk := digests[:min(flushChunk, len(digests))]
		digests = digests[len(chunk):]
		if err := s.update(ctx, func(txn *badger.Txn) error { return touchBlobs(txn, chunk, touched) }); err != nil {
			return err
		}
	}
	pending := slices.Collect(maps.Keys(refs))
	for len(pending) > 0 {
		chunk := pending[:min(flushChunk, len(pending))]
		pending = pending[len(chunk):]
		if err := s.update(ctx, func(txn *badger.Txn) error { return addReferences(txn, chunk) }); err != nil {
			return err
		}
	}
	return nil
}

// touchBlobs moves the last access time of each indexed blob forward.
func touchBlobs(txn *badger.Txn, digests []digest.Digest, at map[digest.Digest]time.Time) error {
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

// addReferences records references whose content is still indexed.
func addReferences(txn *badger.Txn, refs []reference) error {
	for _, ref := range refs {
		_, err := txn.Get(contentKey(ref.kind, ref.d))
		if errors.Is(err, badger.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if _, err := txn.Get(usedByKey(ref.d, ref.repo)); err == nil {
			continue // already known: skip the write
		}
		if err := setReference(txn, ref.repo, ref.d, ref.kind); err != nil {
			return err
		}
	}
	return nil
}
