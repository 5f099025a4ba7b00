package s3blobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/regmirror/regmirror/cache/blobstore"
)

// file reads one object, whose size Open learned. Read streams one ranged
// GET from the current offset, started at the first Read after Open or a
// Seek elsewhere; ReadAt makes a GET of its own, so that it is safe for
// concurrent use as io.ReaderAt asks. The requests run under no deadline
// of the caller's (a File's methods take no context): Close ends the one
// in flight.
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

	off    int64         // where Read reads next
	body   io.ReadCloser // Read's GET, nil until needed
	bodyAt int64         // the offset body reads next
	closed bool
}

var _ blobstore.File = (*file)(nil)

func (f *file) Read(p []byte) (int, error) {
	if f.closed {
		return 0, f.store.pathError("read", f.key, fs.ErrClosed)
	}
	if f.off >= f.size {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if f.body != nil && f.bodyAt != f.off {
		f.closeBody()
	}
	if f.body == nil {
		body, err := f.get(f.off, f.size)
		if err != nil {
			return 0, err
		}
		f.body, f.bodyAt = body, f.off
	}
	n, err := f.body.Read(p)
	f.off += int64(n)
	f.bodyAt += int64(n)
	switch {
	case err == io.EOF && f.off < f.size:
		f.closeBody()
		return n, f.store.pathError("read", f.key, io.ErrUnexpectedEOF)
	case err != nil && err != io.EOF:
		f.closeBody()
		return n, f.store.pathError("read", f.key, err)
	}
	return n, err
}

func (f *file) ReadAt(p []byte, off int64) (int, error) {
	if f.closed {
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
	body, err := f.get(off, end)
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

// get starts a GET of the bytes [from, to).
func (f *file) get(from, to int64) (io.ReadCloser, error) {
	var opts minio.GetObjectOptions
	if err := opts.SetRange(from, to-1); err != nil {
		return nil, f.store.pathError("read", f.key, err)
	}
	s := f.store
	body, _, _, err := minio.Core{Client: s.client}.GetObject(context.Background(), s.bucket, f.key, opts)
	if err != nil {
		return nil, s.pathError("read", f.key, err)
	}
	return body, nil
}

// Seek moves the offset of Read; past the end is allowed, as for files,
// and reads io.EOF there.
func (f *file) Seek(offset int64, whence int) (int64, error) {
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

func (f *file) Close() error {
	if f.closed {
		return f.store.pathError("close", f.key, fs.ErrClosed)
	}
	f.closed = true
	f.closeBody()
	return nil
}

func (f *file) closeBody() {
	if f.body != nil {
		f.body.Close()
		f.body = nil
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
