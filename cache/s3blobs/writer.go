package s3blobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/minio/minio-go/v7"

	"github.com/regmirror/regmirror/cache/blobstore"
)

// writer spools a blob to a local file and uploads it at Commit. Write
// and Commit run on one goroutine; ReadAt reads the spool file, which an
// *os.File allows concurrently with writes.
type writer struct {
	store *Store
	key   string
	spool *os.File
	// path is the spool file's name while it still has one: it is unlinked
	// at once where the system allows that (not Windows), else at Close.
	path string
	size int64 // written so far; Write's and Commit's goroutine only

	mu sync.Mutex
	// done: committed, or aborted; closed: Close was called.
	done, closed bool
}

var _ blobstore.Writer = (*writer)(nil)

func newWriter(s *Store, key string) (*writer, error) {
	f, err := os.CreateTemp(s.spoolDir, "regmirror-s3-spool-*")
	if err != nil {
		return nil, fmt.Errorf("s3blobs: spool file for %s: %w", key, err)
	}
	w := &writer{store: s, key: key, spool: f}
	if err := os.Remove(f.Name()); err != nil {
		w.path = f.Name()
	}
	return w, nil
}

func (w *writer) Write(p []byte) (int, error) {
	n, err := w.spool.Write(p)
	w.size += int64(n)
	if err != nil {
		return n, fmt.Errorf("s3blobs: spooling %s: %w", w.key, err)
	}
	return n, nil
}

func (w *writer) ReadAt(p []byte, off int64) (int, error) { return w.spool.ReadAt(p, off) }

// Commit uploads the spool file: one PUT, or a multipart upload when it is
// larger than a part, which S3 assembles into the object only at its
// completion. Either way the key shows the whole blob or what it showed
// before; a failed multipart upload is aborted by minio. Commit may be
// tried again after a failure.
func (w *writer) Commit(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done || w.closed {
		return fmt.Errorf("s3blobs: commit %s: writer already committed, aborted or closed", w.key)
	}
	s := w.store
	_, err := s.client.PutObject(ctx, s.bucket, w.key, io.NewSectionReader(w.spool, 0, w.size), w.size,
		minio.PutObjectOptions{ContentType: "application/octet-stream", PartSize: s.partSize})
	if err != nil {
		return s.pathError("commit", w.key, err)
	}
	w.done = true
	return nil
}

// Abort marks the write discarded: nothing was uploaded, and the spool
// file stays readable until Close.
func (w *writer) Abort() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
	return nil
}

// Close closes the spool file, and removes it if it still has a name.
func (w *writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed, w.done = true, true
	err := w.spool.Close()
	if w.path != "" {
		err = errors.Join(err, os.Remove(w.path))
	}
	if err != nil {
		return fmt.Errorf("s3blobs: closing the spool file of %s: %w", w.key, err)
	}
	return nil
}
