package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/cache/blobstore"
	"github.com/regmirror/regmirror/cache/index"
	"github.com/regmirror/regmirror/internal/fill"
)

// ReadBlob opens the cached blob d for reading from offset and returns its
// total size. It fails with an error wrapping fs.ErrNotExist when d is not
// cached, ErrInvalidOffset for a negative offset, and ErrInvalidDigest or
// ErrUnsupportedDigest for a bad digest. An offset past the end yields a
// reader at EOF, so the caller can answer "range not satisfiable" with the size.
// The reader has a method VerifiedFile() *os.File giving the verified blob
// file it reads, for sending it with sendfile (FetchBlob's readers have it
// too, returning nil while they stream a download).
func (s *Store) ReadBlob(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, int64, error) {
	if err := checkDigest(d); err != nil {
		return nil, 0, fmt.Errorf("read blob: %w", err)
	}
	return s.openCached(ctx, d, offset)
}

// FetchBlob serves d from the cache, or downloads it with fetch on a miss,
// for repository repo: content stored for other repositories only is
// refused with a *NotLinkedError (see Linked), since repo's upstream has
// not confirmed it has d. Concurrent calls for one digest and repository
// share one download, whatever other repositories download of it: a
// download that fails (a hostile upstream's) fails only its own readers; the returned reader
// streams the bytes as they arrive, starting at offset. size is -1 when
// fetch could not tell it. coalesced reports that another call's download
// (or one that just completed) served this one.
//
// The download belongs to the Store: it goes on when the caller's ctx ends,
// as long as the blob is worth keeping (its size is known and within
// Limits.MaxKeptSize). It stops on Close, when no byte arrives for
// Options.StallTimeout, when it runs longer than Limits.FillTimeout, and
// when its last reader leaves a blob not worth keeping. When the upstream
// fails it midway (or before the first byte) with a temporary error, it
// calls fetch again from the offset it got to, as Options.Retry says; the
// readers do not notice. A body is never
// read past its announced size, nor past Limits.MaxBlobSize when the size is
// unknown. The blob is indexed, and the reader's final byte released, only
// once its size and digest check out; otherwise Read fails with an error
// wrapping ErrDigestMismatch, ErrSizeMismatch, ErrBlobTooLarge, ErrStalled,
// ErrFillTimeout or fetch's error, and nothing is kept. FetchBlob itself
// returns fetch's error when fetch fails, and ErrBlobTooLarge when the
// announced size is over Limits.MaxBlobSize.
func (s *Store) FetchBlob(ctx context.Context, repo string, d digest.Digest, offset int64,
	fetch func(ctx context.Context, offset int64) (body io.ReadCloser, start, size int64, err error)) (rc io.ReadCloser, size int64, coalesced bool, err error) {
	if err := checkDigest(d); err != nil {
		return nil, 0, false, fmt.Errorf("fetch blob: %w", err)
	}
	if err := checkName("repository", repo); err != nil {
		return nil, 0, false, fmt.Errorf("fetch blob: %w", err)
	}
	if offset < 0 {
		return nil, 0, false, fmt.Errorf("fetch blob %s at %d: %w", d, offset, ErrInvalidOffset)
	}
	return s.fetch(ctx, repo, d, offset, fetch, absence{})
}

// absence is what a LookupBlob that found no row for a blob saw: the
// count of writes that may add a blob row (Store.blobsIndexed) before it.
type absence struct {
	known bool
	at    uint64
}

// indexingBlobRow counts a write that may add a blob row, before it runs,
// and returns what counts its end: see Store.blobsIndexed.
func (s *Store) indexingBlobRow() (done func()) {
	s.blobsIndexing.Add(1) // first: see lookupAbsence
	s.blobsIndexed.Add(1)
	return func() { s.blobsIndexing.Add(-1) }
}

// lookupAbsence is taken before a lookup reads the index: what its finding
// no row will tell. A write counted before it has either ended, its row
// in the lookup's snapshot, or is still counted running; one counted after
// it changes blobsIndexed, and joinFill looks again.
func (s *Store) lookupAbsence() absence {
	at := s.blobsIndexed.Load()
	return absence{known: s.blobsIndexing.Load() == 0, at: at}
}

// fetch is FetchBlob, told by absent when a lookup found no row for d.
func (s *Store) fetch(ctx context.Context, repo string, d digest.Digest, offset int64, fetch fetchFunc, absent absence) (io.ReadCloser, int64, bool, error) {
	for {
		if !absent.known {
			rc, size, err := s.openCached(ctx, d, offset)
			if err == nil {
				err = s.requireBlobLink(ctx, repo, d)
				if err != nil {
					rc.Close()
					rc = nil
				}
			}
			if !errors.Is(err, fs.ErrNotExist) {
				return rc, size, true, err
			}
		}
		dl, joined, err := s.joinFill(ctx, repo, d, fetch, absent)
		absent = absence{} // a second round looks again
		var busy *retryWhenDone
		switch {
		case errors.As(err, &busy):
			if err := busy.wait(ctx); err != nil {
				return nil, 0, false, err
			}
			continue
		case errors.Is(err, errJustCommitted):
			continue
		case err != nil:
			return nil, 0, false, err
		}
		if joined {
			s.metrics.coalescedWaiters.Inc()
		}
		rc, size, err := s.follow(ctx, dl, offset)
		if err != nil {
			s.uses.release(d)
			return nil, 0, false, err
		}
		return s.registered(rc, d), size, joined, nil
	}
}

// retryWhenDone means a download cannot start or be joined now: the blob
// is being removed (the download could publish a file the removal is about
// to delete), or its download in flight was abandoned and is winding down.
// The caller waits for done and tries again.
type retryWhenDone struct {
	done   <-chan struct{}
	reason string
}

func (e *retryWhenDone) Error() string { return e.reason }

func (e *retryWhenDone) wait(ctx context.Context) error {
	select {
	case <-e.done:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// registered wraps the reader of d so that closing it unregisters it from
// the use table.
func (s *Store) registered(rc io.ReadCloser, d digest.Digest) io.ReadCloser {
	return &usedReader{ReadCloser: rc, release: func() { s.uses.release(d) }}
}

// fetchFunc opens an upstream download of a blob from offset on: its body,
// where the body starts (offset, or 0 when the upstream sent the whole
// blob), and the blob's full size, -1 when upstream did not announce one.
type fetchFunc = func(ctx context.Context, offset int64) (body io.ReadCloser, start, size int64, err error)

// errJustCommitted means a download of the digest finished between the
// caller's cache lookup and its attempt to join it.
var errJustCommitted = errors.New("blob committed meanwhile")

// joinFill joins the download of d in flight, or starts one. Either way the
// caller holds a reference to the download's file, counts as one of its
// readers, and is registered as a reader of d in the use table. It fails
// with *retryWhenDone while d is being removed or its download is being
// abandoned.
func (s *Store) joinFill(ctx context.Context, repo string, d digest.Digest, fetch fetchFunc, absent absence) (dl *download, joined bool, err error) {
	s.downloads.Lock()
	defer s.downloads.Unlock()
	if s.closed {
		return nil, false, fmt.Errorf("fetch blob %s: %w", d, ErrClosed)
	}
	if done, ok := s.uses.acquire(d); !ok {
		return nil, false, &retryWhenDone{done: done, reason: "blob being removed"}
	}
	if f, ok := s.downloads.LookupLocked(fillKey{d, repo}); ok {
		dl := f.Value()
		if dl.abandoned {
			s.uses.release(d)
			return nil, false, &retryWhenDone{done: dl.ended, reason: "download being abandoned"}
		}
		dl.joinLocked(repo)
		return dl, true, nil
	}
	// A download leaves the map only after it committed, so the caller's
	// lookup may have raced with one: look again before fetching twice,
	// unless no blob row may have been added since a lookup found none.
	if absent.known && s.blobsIndexed.Load() == absent.at {
		return s.startFill(ctx, repo, d, fetch), false, nil
	}
	switch indexed, err := s.hasBlob(ctx, d); {
	case err != nil:
		s.uses.release(d)
		return nil, false, fmt.Errorf("fetch blob %s: %w", d, err)
	case indexed:
		s.uses.release(d)
		return nil, false, errJustCommitted
	}
	return s.startFill(ctx, repo, d, fetch), false, nil
}

// JoinDownload reads blob d for repo from the download of it in flight
// for repo, or from the cache when that download has committed it; it
// never starts a download. It fails wrapping fs.ErrNotExist when there is
// neither (the download failed, or there was none), and with a
// *NotLinkedError when the blob is stored but repo does not hold it.
func (s *Store) JoinDownload(ctx context.Context, repo string, d digest.Digest, offset int64) (io.ReadCloser, int64, error) {
	if dl := s.joinInFlight(repo, d); dl != nil {
		rc, size, err := s.follow(ctx, dl, offset)
		if err != nil {
			s.uses.release(d)
			return nil, 0, err
		}
		return s.registered(rc, d), size, nil
	}
	rc, size, err := s.openCached(ctx, d, offset)
	if err == nil {
		if err = s.requireBlobLink(ctx, repo, d); err != nil {
			rc.Close()
			return nil, 0, err
		}
	}
	return rc, size, err
}

// joinInFlight joins the download of d for repo in flight, as joinFill
// does, or returns nil when there is none to join.
func (s *Store) joinInFlight(repo string, d digest.Digest) *download {
	s.downloads.Lock()
	defer s.downloads.Unlock()
	f, ok := s.downloads.LookupLocked(fillKey{d, repo})
	if s.closed || !ok || f.Value().abandoned {
		return nil
	}
	if _, ok := s.uses.acquire(d); !ok {
		return nil
	}
	f.Value().joinLocked(repo)
	return f.Value()
}

// startFill starts the download of d as a fill of Store.downloads, which
// hands it to the readers that join at once. Called with the downloads'
// lock held.
func (s *Store) startFill(ctx context.Context, repo string, d digest.Digest, fetch fetchFunc) *download {
	// The fill outlives the caller, who may hang up while others still read,
	// but not its wall-clock limit.
	timeout := s.currentLimits().FillTimeout
	limit := fill.Limit{Timeout: timeout,
		Cause: fmt.Errorf("%w: longer than %s: %w", ErrFillTimeout, timeout, context.DeadlineExceeded)}
	s.fills.Add(1)
	s.metrics.downloadsInFlight.Inc()
	f := s.downloads.StartLocked(ctx, fillKey{d, repo}, limit, func(f *fill.Fill[*download]) *download {
		dl := newDownload(d, repo, f)
		dl.acquire() // the caller's
		return dl
	}, func(ctx context.Context, f *fill.Fill[*download]) (*download, error) {
		s.fill(ctx, f.Value(), repo, fetch)
		return f.Value(), nil
	})
	return f.Value()
}

// follow waits for the download to start and returns a reader from offset.
// It gives back the caller's hold on dl when it fails.
func (s *Store) follow(ctx context.Context, dl *download, offset int64) (io.ReadCloser, int64, error) {
	size, err := dl.waitStarted(ctx)
	if err != nil {
		s.leave(dl)
		return nil, 0, err
	}
	if size >= 0 && offset > size {
		offset = size // at EOF: the caller learns the size and refuses the range
	}
	return newBlobReader(ctx, dl, offset, func() { s.leave(dl) }), size, nil
}

// leave gives back a reader's hold on dl. When it was the last reader of a
// download that is not worth finishing for the cache alone (its size is
// unknown, so it could grow without end, or too large to keep), the
// download stops: nobody would get its bytes. A download that has not
// started yet is decided on at its start (see abandonIfUnread).
func (s *Store) leave(dl *download) {
	s.downloads.Lock()
	dl.readers--
	abandon := dl.readers == 0 && !dl.abandoned && dl.unwanted()
	if abandon {
		dl.abandoned = true
	}
	s.downloads.Unlock()
	if abandon {
		dl.cancel(fmt.Errorf("%w: its last reader left", ErrAbandoned))
	}
	dl.release()
}

// abandonIfUnread reports, at the start of a download not worth finishing,
// whether every reader has left already; the download is then abandoned.
func (s *Store) abandonIfUnread(dl *download) bool {
	s.downloads.Lock()
	defer s.downloads.Unlock()
	if dl.readers == 0 {
		dl.abandoned = true
	}
	return dl.abandoned
}

// openCached opens the indexed blob d at offset, registered as a reader of d
// until it is closed, so that d is not removed under it. A blob being
// removed is reported as absent.
func (s *Store) openCached(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, int64, error) {
	if _, ok := s.uses.acquire(d); !ok {
		return nil, 0, errRemoving(d)
	}
	f, size, err := s.openFile(ctx, d, offset)
	if err != nil {
		s.uses.release(d)
		return nil, 0, err
	}
	return s.registered(f, d), size, nil
}

// openFile opens the indexed blob d at offset. A blob whose file is gone or
// has the wrong size is dropped from the index and reported as absent: it is
// never served. The local store's File is an *os.File, which the reader
// hands out for sendfile (see usedReader.VerifiedFile).
func (s *Store) openFile(ctx context.Context, d digest.Digest, offset int64) (blobstore.File, int64, error) {
	row, err := s.blobRow(ctx, d)
	if err != nil {
		return nil, 0, fmt.Errorf("read blob %s: %w", d, err)
	}
	return s.openRow(ctx, d, row, offset)
}

// openRow is openFile with the blob's row read already.
func (s *Store) openRow(ctx context.Context, d digest.Digest, row blobRow, offset int64) (blobstore.File, int64, error) {
	f, err := s.blobs.Open(ctx, d)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, s.dropDamaged(ctx, d, row, "file missing")
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read blob %s: %w", d, err)
	}
	if err := checkFile(f, row.Size, offset); err != nil {
		f.Close()
		if errors.Is(err, errWrongSize) {
			return nil, 0, s.dropDamaged(ctx, d, row, err.Error())
		}
		return nil, 0, fmt.Errorf("read blob %s: %w", d, err)
	}
	if err := s.checkContent(ctx, d, f, row); err != nil {
		f.Close()
		return nil, 0, err
	}
	if !s.skipAccess {
		s.access.touch(d, s.now())
	}
	return f, row.Size, nil
}

var errWrongSize = errors.New("file size differs from index")

// checkFile verifies f has the indexed size and positions it at offset.
func checkFile(f blobstore.File, size, offset int64) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() != size {
		return fmt.Errorf("%w: %d bytes, want %d", errWrongSize, fi.Size(), size)
	}
	if offset < 0 {
		return fmt.Errorf("offset %d of %d bytes: %w", offset, size, ErrInvalidOffset)
	}
	_, err = f.Seek(min(offset, size), io.SeekStart)
	return err
}

func (s *Store) blobRow(ctx context.Context, d digest.Digest) (blobRow, error) {
	v, err := readValue(ctx, s.db, blobKey(d))
	if err != nil {
		return blobRow{}, err
	}
	return unmarshalBlobRow(v)
}

func (s *Store) hasBlob(ctx context.Context, d digest.Digest) (bool, error) {
	_, err := s.blobRow(ctx, d)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// dropDamaged removes the index row of a blob whose file cannot be served and
// returns the error that reports the blob as absent. The row goes only if it
// is still the one that was read: a fresh download may have replaced it.
func (s *Store) dropDamaged(ctx context.Context, d digest.Digest, seen blobRow, reason string) error {
	_, err := s.dropRow(ctx, d, seen, reason)
	return err
}

// dropRow is dropDamaged, also reporting whether this call dropped the row.
// Only then is the damage logged: a row gone or replaced since it was seen
// means the blob was removed meanwhile (a BlobLookup does not hold the
// blob between its read and Open), which explains a missing file.
func (s *Store) dropRow(ctx context.Context, d digest.Digest, seen blobRow, reason string) (bool, error) {
	var dropped bool
	err := s.db.Update(ctx, func(txn index.Txn) error {
		dropped = false
		v, err := getValue(txn, blobKey(d))
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if cur, err := unmarshalBlobRow(v); err != nil || !cur.Created.Equal(seen.Created) {
			return err
		}
		dropped = true
		return txn.Delete(blobKey(d))
	})
	if err != nil {
		return false, fmt.Errorf("read blob %s: drop damaged row: %w", d, err)
	}
	if dropped {
		s.log.Warn("dropping damaged blob from cache index", "digest", d, "reason", reason)
		s.forget(seen.Size)
	}
	return dropped, fmt.Errorf("read blob %s: %s: %w", d, reason, fs.ErrNotExist)
}
