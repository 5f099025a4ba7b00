package cache

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/cache/blobstore"
	"github.com/regmirror/regmirror/cache/index"
)

// copyBufferSize is the chunk in which a download is written and published
// to its readers.
const copyBufferSize = 128 << 10

// fill runs one download to its end and tells the readers how it ended.
func (s *Store) fill(ctx context.Context, dl *download, repo string, fetch fetchFunc) {
	defer s.fills.Done()
	defer s.metrics.downloadsInFlight.Dec()
	defer dl.cancel(nil)

	err := s.transfer(ctx, dl, repo, fetch)
	if err != nil && ctx.Err() != nil {
		// The body failed because the fill was stopped; say why.
		err = fmt.Errorf("download blob %s: %w", dl.digest, context.Cause(ctx))
	}
	if errors.Is(err, ErrDigestMismatch) {
		s.metrics.digestMismatches.Inc()
	}

	s.downloads.Lock()
	dl.flight.LeaveLocked()
	joiners := dl.repos
	s.downloads.Unlock()
	close(dl.ended)
	if err == nil && !dl.passedThrough {
		for r := range joiners {
			s.access.addRef(reference{repo: r, d: dl.digest, kind: kindBlob})
		}
	}
	dl.finish(err)
	if err == nil && !dl.passedThrough {
		s.shareDownload(ctx, dl)
	}
	dl.release()
}

// transfer fetches the blob into a temp object, verifies it and publishes
// it. Whatever happens, the temp object is gone when it returns.
func (s *Store) transfer(ctx context.Context, dl *download, repo string, fetch fetchFunc) error {
	stall := time.AfterFunc(s.stallTimeout, func() {
		dl.cancel(fmt.Errorf("%w: no data for %s", ErrStalled, s.stallTimeout))
	})
	defer stall.Stop()
	k := &sink{size: -1}
	defer s.discard(k)

	if err := s.receive(ctx, dl, fetch, k, stall); err != nil {
		return err
	}
	if err := verify(dl.digest, k.hash, k.size, k.written); err != nil {
		return err
	}
	if !s.keeps(k.written) {
		s.passThrough(dl)
		return nil
	}
	return s.publish(ctx, dl.digest, k.file, repo, k.written)
}

// sink is where a download's bytes go, across the requests it takes: the
// temp object, and the running hash of every byte written to it.
type sink struct {
	file    blobstore.Writer // nil until the first answer
	out     io.Writer
	hash    hash.Hash
	size    int64 // as the first answer announced it; -1 when unknown
	limit   bodyLimit
	written int64
	// reserved is what the download counts against the budget.
	reserved int64
}

func (k *sink) open(w blobstore.Writer, size, maxSize int64, alg digest.Algorithm) {
	k.file, k.size = w, size
	k.hash = alg.Hash() // the digest passed checkDigest: a supported algorithm
	k.out = io.MultiWriter(w, k.hash)
	k.limit = bodyLimit{size: size, max: maxSize}
}

// discard removes the temp object (doing nothing once it was committed)
// and gives back the budget reservation. Readers following the download
// read on until they close it (see download.release).
func (s *Store) discard(k *sink) {
	if k.file != nil {
		if err := k.file.Abort(); err != nil {
			s.log.Warn("discard the temp file of a download", "err", err)
		}
	}
	s.reserved.Add(-k.reserved)
}

// bodyLimit is how many bytes a body may have: its announced size, or the
// cap on any blob when the size is unknown (-1).
type bodyLimit struct {
	size, max int64
}

// check fails once a body has grown to n bytes past its limit.
func (l bodyLimit) check(d digest.Digest, n int64) error {
	switch {
	case l.size >= 0 && n > l.size:
		return fmt.Errorf("blob %s: upstream sent more than %d bytes: %w", d, l.size, ErrSizeMismatch)
	case l.size < 0 && n > l.max:
		return fmt.Errorf("blob %s: upstream sent more than %d bytes of unknown length: %w", d, l.max, ErrBlobTooLarge)
	}
	return nil
}

// copyBody streams body into k, publishing progress to the readers after
// every chunk. It stops as soon as body exceeds its limit, before writing
// the excess. A failure to read body is the upstream's (see upstreamFailure).
func copyBody(dl *download, k *sink, body io.Reader, progressed func()) error {
	buf := make([]byte, copyBufferSize)
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if err := k.limit.check(dl.digest, k.written+int64(n)); err != nil {
				return err
			}
			if _, err := k.out.Write(buf[:n]); err != nil {
				return fmt.Errorf("blob %s: write temp file: %w", dl.digest, err)
			}
			k.written += int64(n)
			dl.advance(k.written)
			progressed()
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("blob %s: read upstream: %w", dl.digest, &upstreamFailure{rerr})
		}
	}
}

// verify checks a complete download against its announced size and digest.
func verify(want digest.Digest, h hash.Hash, size, written int64) error {
	if size >= 0 && written != size {
		return fmt.Errorf("blob %s: got %d bytes, want %d: %w", want, written, size, ErrSizeMismatch)
	}
	if got := digest.NewDigest(want.Algorithm(), h); got != want {
		return fmt.Errorf("blob %s: content hashes to %s: %w", want, got, ErrDigestMismatch)
	}
	return nil
}

// publish commits the verified temp object as the blob, durably, and only
// then indexes it: an index row never points at bytes that might not
// survive a crash.
func (s *Store) publish(ctx context.Context, d digest.Digest, w blobstore.Writer, repo string, size int64) error {
	if err := w.Commit(ctx); err != nil {
		return fmt.Errorf("blob %s: %w", d, err)
	}
	crashPoint(stepRenamed)
	if err := s.commitBlob(ctx, d, size, repo); err != nil {
		s.blobs.Remove(ctx, d)
		return fmt.Errorf("blob %s: index: %w", d, err)
	}
	crashPoint(stepCommitted)
	s.verified.add(d) // hashed on its way in
	return nil
}

// commitBlob indexes a blob file and the repository that asked for it.
func (s *Store) commitBlob(ctx context.Context, d digest.Digest, size int64, repo string) error {
	return s.indexBlob(ctx, d, size, func(txn index.Txn) error {
		return setReference(txn, repo, d, kindBlob)
	})
}

// indexBlob adds the row of the blob file d, unless it has one already,
// and runs attach (which records who uses the blob) in the same
// transaction. A new row grows the usage the evictor watches.
func (s *Store) indexBlob(ctx context.Context, d digest.Digest, size int64, attach func(index.Txn) error) error {
	now := s.now()
	var added bool
	defer s.indexingBlobRow()()
	err := s.db.Update(ctx, func(txn index.Txn) error {
		_, err := getValue(txn, blobKey(d))
		switch added = errors.Is(err, fs.ErrNotExist); {
		case added:
			row := blobRow{Size: size, Created: now, LastAccess: now}
			if err := txn.Set(blobKey(d), row.marshal()); err != nil {
				return err
			}
		case err != nil:
			return err
		}
		return attach(txn)
	})
	if err == nil && added {
		s.metrics.blobs.Inc()
		s.metrics.sizeBytes.Add(float64(size))
		s.usage.Add(size)
		s.signalGrowth()
	}
	return err
}

// makeDir creates a fan-out directory of the blob tree, syncing its parent
// when it is new so that the directory survives a crash with its files.
func makeDir(dir string) error {
	err := os.Mkdir(dir, dirMode)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return syncDir(filepath.Dir(dir))
}

// syncDir makes the entries of dir (a rename into it) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
