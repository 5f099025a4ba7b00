package cache

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sync"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/singleflight"
)

// verifiedSet remembers the blobs whose bytes this process has seen hash to
// their digest: downloaded, adopted or re-hashed since Open. A blob file
// found at Open was written and synced by an earlier run, but a disk can
// flip a bit or lose a sector since, and a size check does not notice. So
// the first read of every other blob hashes its file before serving it:
// once per blob per process, which costs one extra read of a file that the
// page cache then holds for the send.
type verifiedSet struct {
	mu sync.Mutex
	// sums are the sha256 sums, kept as arrays: half the memory of digest
	// strings. The rare sha512 blobs have their own set.
	sums    map[[sha256.Size]byte]struct{}
	sums512 map[[sha512.Size]byte]struct{}
	// hashing shares one hash of a blob between its concurrent first readers.
	hashing singleflight.Group
}

// sum256 and sum512 decode the hex of d, which passed checkDigest, into an
// array.
func sum256(d digest.Digest) (k [sha256.Size]byte) {
	hex.Decode(k[:], []byte(d.Encoded()))
	return k
}

func sum512(d digest.Digest) (k [sha512.Size]byte) {
	hex.Decode(k[:], []byte(d.Encoded()))
	return k
}

func (v *verifiedSet) has(d digest.Digest) (ok bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if d.Algorithm() == digest.SHA512 {
		_, ok = v.sums512[sum512(d)]
	} else {
		_, ok = v.sums[sum256(d)]
	}
	return ok
}

func (v *verifiedSet) add(d digest.Digest) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if d.Algorithm() == digest.SHA512 {
		if v.sums512 == nil {
			v.sums512 = make(map[[sha512.Size]byte]struct{})
		}
		v.sums512[sum512(d)] = struct{}{}
		return
	}
	if v.sums == nil {
		v.sums = make(map[[sha256.Size]byte]struct{})
	}
	v.sums[sum256(d)] = struct{}{}
}

func (v *verifiedSet) forget(d digest.Digest) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if d.Algorithm() == digest.SHA512 {
		delete(v.sums512, sum512(d))
	} else {
		delete(v.sums, sum256(d))
	}
}

// checkContent makes sure the indexed blob d, open as f, hashes to d before
// its first read in this process. A file that does not is removed with its
// row and reported as absent, so the caller downloads the blob again:
// wrong bytes are never served. Concurrent first readers share one hash,
// which runs to its end even if the reader that started it leaves.
func (s *Store) checkContent(ctx context.Context, d digest.Digest, f io.ReaderAt, row blobRow) error {
	if s.verified.has(d) {
		return nil
	}
	ch := s.verified.hashing.DoChan(d.String(), func() (any, error) {
		_, got, err := hashFile(context.WithoutCancel(ctx), io.NewSectionReader(f, 0, row.Size), d.Algorithm())
		if err != nil {
			return "", fmt.Errorf("read blob %s: hash: %w", d, err)
		}
		if got == d {
			s.verified.add(d)
		}
		return got, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return res.Err
		}
		if got := res.Val.(digest.Digest); got != d {
			return s.dropCorrupt(ctx, d, row, "content hashes to "+got.String())
		}
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// dropCorrupt drops the row of a blob whose file does not hash to its
// digest, then the file, and reports the blob as absent.
func (s *Store) dropCorrupt(ctx context.Context, d digest.Digest, row blobRow, reason string) error {
	dropped, err := s.dropRow(ctx, d, row, reason)
	if dropped {
		s.metrics.corruptFiles.Inc()
		if rmErr := s.blobs.Remove(ctx, d); rmErr != nil && !errors.Is(rmErr, fs.ErrNotExist) {
			s.log.Warn("remove corrupt blob file", "digest", d, "err", rmErr)
		}
	}
	return err
}
