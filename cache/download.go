package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/cache/blobstore"
	"github.com/regmirror/regmirror/internal/fill"
)

// download is one blob being fetched into a temp object. The filling
// goroutine appends to it; readers follow it with ReadAt on the same
// blobstore.Writer, which keeps working after Commit. The writer is
// reference counted (the filler plus each reader) and closed by the last one.
type download struct {
	digest digest.Digest
	// flight is the download's fill in Store.downloads.
	flight *fill.Fill[*download]
	// ended is closed once the fill is over and the download has left
	// Store.downloads.
	ended chan struct{}

	// repo is the repository the blob is downloaded for; only requests
	// for it may join.
	repo string
	// Guarded by the lock of Store.downloads:
	// repos that joined this download. Their references are recorded once
	// the blob is committed.
	repos map[string]struct{}
	// readers counts the callers holding a reader of the download (or about
	// to): when the last leaves, a download not worth finishing stops.
	readers int
	// abandoned is set when the download was stopped for want of readers;
	// callers then wait for it to end and start a fresh one.
	abandoned bool

	// passedThrough is set, by the filler alone, when the verified blob was
	// too large to keep (see Limits.MaxKeptSize).
	passedThrough bool

	mu      sync.Mutex
	file    blobstore.Writer
	started bool  // fetch returned, size is known
	size    int64 // as announced by fetch; -1 when unknown
	// worthFinishing is set at start when the blob would be completed and
	// kept even with no reader left (see Store.worthFinishing).
	worthFinishing bool
	written        int64 // bytes in file
	done           bool  // verified, renamed into place and indexed
	err            error // why the download failed
	refs           int
	changed        chan struct{} // closed and replaced whenever the state changes
}

func newDownload(d digest.Digest, repo string, flight *fill.Fill[*download]) *download {
	return &download{
		digest:  d,
		repo:    repo,
		flight:  flight,
		ended:   make(chan struct{}),
		repos:   make(map[string]struct{}),
		readers: 1, // the caller who starts it
		size:    -1,
		refs:    1, // the filler's
		changed: make(chan struct{}),
	}
}

// joinLocked counts a new reader of the download, for repo. Called with
// the lock of Store.downloads held.
func (dl *download) joinLocked(repo string) {
	dl.acquire()
	dl.readers++
	dl.repos[repo] = struct{}{}
}

// cancel stops the fill: on Close, when it stalls or is abandoned.
func (dl *download) cancel(cause error) { dl.flight.Cancel(cause) }

// broadcast wakes every waiter. Called with dl.mu held.
func (dl *download) broadcast() {
	close(dl.changed)
	dl.changed = make(chan struct{})
}

func (dl *download) setFile(f blobstore.Writer) {
	dl.mu.Lock()
	defer dl.mu.Unlock()
	dl.file = f
}

func (dl *download) start(size int64, worthFinishing bool) {
	dl.mu.Lock()
	defer dl.mu.Unlock()
	dl.started, dl.size, dl.worthFinishing = true, size, worthFinishing
	dl.broadcast()
}

// unwanted reports that the download has started and is still running, but
// is not worth finishing unless someone reads it.
func (dl *download) unwanted() bool {
	dl.mu.Lock()
	defer dl.mu.Unlock()
	return dl.started && !dl.worthFinishing && !dl.done && dl.err == nil
}

func (dl *download) advance(written int64) {
	dl.mu.Lock()
	defer dl.mu.Unlock()
	dl.written = written
	dl.broadcast()
}

func (dl *download) finish(err error) {
	dl.mu.Lock()
	defer dl.mu.Unlock()
	dl.done, dl.err = err == nil, err
	dl.broadcast()
}

// acquire registers one more user of the file. The caller must know the
// download holds a reference already (it is still in Store.downloads).
func (dl *download) acquire() {
	dl.mu.Lock()
	defer dl.mu.Unlock()
	dl.refs++
}

func (dl *download) release() {
	dl.mu.Lock()
	defer dl.mu.Unlock()
	dl.refs--
	if dl.refs == 0 && dl.file != nil {
		dl.file.Close()
	}
}

// waitStarted blocks until fetch has returned and reports the announced size,
// or why the download failed.
func (dl *download) waitStarted(ctx context.Context) (int64, error) {
	for {
		dl.mu.Lock()
		started, size, err, changed := dl.started, dl.size, dl.err, dl.changed
		dl.mu.Unlock()
		switch {
		case err != nil:
			return 0, err
		case started:
			return size, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return 0, context.Cause(ctx)
		}
	}
}

// readable reports how many bytes from the start of the file a reader may
// take now. Until the blob is verified, the last byte is held back: with a
// known size that is byte size-1; with an unknown size, whichever byte
// arrived last. final reports that the count will not grow any more.
func (dl *download) readable() (n int64, final bool, changed <-chan struct{}, err error) {
	dl.mu.Lock()
	defer dl.mu.Unlock()
	switch {
	case dl.err != nil:
		return 0, true, nil, dl.err
	case dl.done:
		return dl.written, true, nil, nil
	case dl.size >= 0:
		n = min(dl.written, dl.size-1)
	default:
		n = dl.written - 1
	}
	return max(n, 0), false, dl.changed, nil
}

// blobReader reads a download from an offset, waiting for bytes that have
// not arrived yet. It is not safe for concurrent use.
type blobReader struct {
	dl    *download
	off   int64
	leave func() // gives back the reader's hold on dl

	// cancelled is closed, after cause is set, when the reader's context ends.
	cancelled chan struct{}
	cause     error
	stopWatch func() bool

	closeOnce sync.Once
}

// newBlobReader takes over one reference to dl, which Close gives back by
// calling leave.
func newBlobReader(ctx context.Context, dl *download, off int64, leave func()) *blobReader {
	r := &blobReader{dl: dl, off: off, leave: leave, cancelled: make(chan struct{})}
	r.stopWatch = context.AfterFunc(ctx, func() {
		r.cause = context.Cause(ctx)
		close(r.cancelled)
	})
	return r
}

// Read returns the bytes at the reader's offset as soon as they are
// readable. It fails with the download's error, and with the reader's
// context's error when that ends first.
func (r *blobReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		n, final, changed, err := r.dl.readable()
		switch {
		case err != nil:
			return 0, err
		case r.off < n:
			return r.readAt(p[:min(int64(len(p)), n-r.off)])
		case final:
			return 0, io.EOF
		}
		select {
		case <-changed:
		case <-r.cancelled:
			return 0, r.cause
		}
	}
}

// readAt fills p from the file; the bytes are known to be there.
func (r *blobReader) readAt(p []byte) (int, error) {
	n, err := r.dl.file.ReadAt(p, r.off)
	r.off += int64(n)
	if n == len(p) {
		return n, nil
	}
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return n, fmt.Errorf("read blob %s: %w", r.dl.digest, err)
}

// Close releases the reader's hold on the download's file. It stops the
// download only when this was its last reader and the cache would not keep
// the blob anyway (see Store.leave).
func (r *blobReader) Close() error {
	r.closeOnce.Do(func() {
		r.stopWatch()
		r.leave()
	})
	return nil
}
