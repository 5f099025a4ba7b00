package s3blobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/regmirror/regmirror/cache/blobstore"
)

// file reads one object, whose size Open learned. Read streams one ranged
// GET from the current offset, started at the first Read after Open or a
// Seek elsewhere; ReadAt makes a GET of its own, so that it is safe for
// concurrent use as io.ReaderAt asks. The requests run under no deadline
// of the caller's (a File's methods take no context): Close ends the one
// Read waits on, and may be called while it does, as a download that
// ends closes the body it reads to unblock it.
//
// Content addressing means every object ever stored under the key holds
// the same bytes, so a File may read across a removal and a new commit of
// its blob; a request made after a removal fails.
type file struct {
	store   *Store
	key     string
	name    string // the digest's hex, for Stat
	size    int64
	modTime time.Time

	// mu guards what follows; it is never held while waiting on the
	// server, so that Close can end the wait.
	mu     sync.Mutex
	off    int64              // where Read reads next
	body   io.ReadCloser      // Read's GET, nil until needed
	bodyAt int64              // the offset body reads next
	stop   context.CancelFunc // ends Read's GET, set while it runs
	closed bool
}

var _ blobstore.File = (*file)(nil)

func (f *file) Read(p []byte) (int, error) {
	body, err := f.bodyFor(len(p))
	if body == nil {
		return 0, err
	}
	n, err := body.Read(p)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return n, f.store.pathError("read", f.key, fs.ErrClosed)
	}
	f.off += int64(n)
	f.bodyAt += int64(n)
	switch {
	case err == io.EOF && f.off < f.size:
		f.closeBodyLocked()
		return n, f.store.pathError("read", f.key, io.ErrUnexpectedEOF)
	case err != nil && err != io.EOF:
		f.closeBodyLocked()
		return n, f.store.pathError("read", f.key, err)
	}
	return n, err
}

// bodyFor returns the GET that a Read of n bytes reads from, started from
// the current offset when there is none there. It returns no body at the
// end (with io.EOF), for n = 0 (with no error) and once closed.
func (f *file) bodyFor(n int) (io.ReadCloser, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.closed:
		return nil, f.store.pathError("read", f.key, fs.ErrClosed)
	case f.off >= f.size:
		return nil, io.EOF
	case n == 0:
		return nil, nil
	case f.body != nil && f.bodyAt == f.off:
		return f.body, nil
	}
	f.closeBodyLocked()
	from := f.off
	ctx, stop := context.WithCancel(context.Background())
	f.stop = stop
	f.mu.Unlock()
	body, err := f.get(ctx, from, f.size)
	f.mu.Lock()
	switch {
	case err != nil:
		stop()
		f.stop = nil
		return nil, err
	case f.closed:
		stop()
		body.Close()
		return nil, f.store.pathError("read", f.key, fs.ErrClosed)
	}
	f.body, f.bodyAt = body, from
	return body, nil
}

func (f *file) ReadAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	closed := f.closed
	f.mu.Unlock()
	if closed {
		return 0, f.store.pathError("read", f.key, fs.ErrClosed)
	}
	if off < 0 {
		return 0, f.store.pathError("read", f.key, errors.New("negative offset"))
	}
	if off >= f.size {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	end := min(off+int64(len(p)), f.size)
	body, err := f.get(context.Background(), off, end)
	if err != nil {
		return 0, err
	}
	defer body.Close()
	n, err := io.ReadFull(body, p[:end-off])
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return n, f.store.pathError("read", f.key, err)
	}
	if end < off+int64(len(p)) {
		return n, io.EOF
	}
	return n, nil
}

// get starts a GET of the bytes [from, to), which ends with ctx.
func (f *file) get(ctx context.Context, from, to int64) (io.ReadCloser, error) {
	var opts minio.GetObjectOptions
	if err := opts.SetRange(from, to-1); err != nil {
		return nil, f.store.pathError("read", f.key, err)
	}
	s := f.store
	body, _, _, err := minio.Core{Client: s.client}.GetObject(ctx, s.bucket, f.key, opts)
	if err != nil {
		return nil, s.pathError("read", f.key, err)
	}
	return body, nil
}

// Seek moves the offset of Read; past the end is allowed, as for files,
// and reads io.EOF there.
func (f *file) Seek(offset int64, whence int) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return 0, f.store.pathError("seek", f.key, fs.ErrClosed)
	}
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += f.off
	case io.SeekEnd:
		offset += f.size
	default:
		return 0, f.store.pathError("seek", f.key, fmt.Errorf("invalid whence %d", whence))
	}
	if offset < 0 {
		return 0, f.store.pathError("seek", f.key, errors.New("negative offset"))
	}
	f.off = offset
	return offset, nil
}

func (f *file) Stat() (fs.FileInfo, error) {
	return fileInfo{name: f.name, size: f.size, modTime: f.modTime}, nil
}

// Close ends the GET a Read waits on, if any: that Read returns
// fs.ErrClosed.
func (f *file) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return f.store.pathError("close", f.key, fs.ErrClosed)
	}
	f.closed = true
	f.closeBodyLocked()
	return nil
}

func (f *file) closeBodyLocked() {
	if f.body != nil {
		f.body.Close()
		f.body = nil
	}
	if f.stop != nil {
		f.stop()
		f.stop = nil
	}
}

// fileInfo describes an object as fs.FileInfo: a read-only regular file.
type fileInfo struct {
	name    string
	size    int64
	modTime time.Time
}

func (i fileInfo) Name() string       { return i.name }
func (i fileInfo) Size() int64        { return i.size }
func (i fileInfo) Mode() fs.FileMode  { return 0o444 }
func (i fileInfo) ModTime() time.Time { return i.modTime }
func (i fileInfo) IsDir() bool        { return false }
func (i fileInfo) Sys() any           { return nil }
