package cache

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/cache/blobstore"
)

// fileBlobs keeps blobs as files under root: root/<alg>/<xx>/<hex> (see
// blobPath), written as temp files in tmp, a directory on the same
// filesystem, and renamed into place. Its Files are *os.File, for
// sendfile. Its zero value is not usable; see newFileBlobs.
type fileBlobs struct {
	root, tmp string
	// stray is told of each file Walk removed from the tree because it
	// cannot be a blob (a name that is no digest, or in the wrong place).
	stray func(path string)
}

var _ blobstore.Interface = (*fileBlobs)(nil)

// newFileBlobs prepares the blob tree under root and an empty temp
// directory tmp. Anything in tmp is a write that a crash interrupted: it
// was never committed, so it can go.
func newFileBlobs(root, tmp string, stray func(path string)) (*fileBlobs, error) {
	if err := os.RemoveAll(tmp); err != nil {
		return nil, fmt.Errorf("sweep %s: %w", tmp, err)
	}
	dirs := []string{root, tmp}
	for _, alg := range algorithms {
		dirs = append(dirs, filepath.Join(root, string(alg)))
	}
	for _, dir := range dirs {
		if err := makePrivateDir(dir); err != nil {
			return nil, err
		}
	}
	return &fileBlobs{root: root, tmp: tmp, stray: stray}, nil
}

// Create starts a temp file in the temp directory.
func (b *fileBlobs) Create(_ context.Context, d digest.Digest) (blobstore.Writer, error) {
	f, err := os.CreateTemp(b.tmp, d.Encoded()+".*")
	if err != nil {
		return nil, err
	}
	return &fileWriter{final: blobPath(b.root, d), f: f, out: newWritebackFile(f)}, nil
}

// Open opens the blob file of d. The *os.File it returns is what the
// cache hands to the HTTP layer for sendfile.
func (b *fileBlobs) Open(_ context.Context, d digest.Digest) (blobstore.File, error) {
	f, err := os.Open(blobPath(b.root, d))
	if err != nil {
		return nil, err // a *fs.PathError: ErrNotExist when missing
	}
	return f, nil
}

// Stat stats the blob file of d.
func (b *fileBlobs) Stat(_ context.Context, d digest.Digest) (blobstore.Info, error) {
	fi, err := os.Stat(blobPath(b.root, d))
	if err != nil {
		return blobstore.Info{}, err
	}
	return blobstore.Info{Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// Remove unlinks the blob file of d: a descriptor open on it reads on.
func (b *fileBlobs) Remove(_ context.Context, d digest.Digest) error {
	return os.Remove(blobPath(b.root, d))
}

// Walk walks the tree of every algorithm. It removes the files there that
// cannot be blobs (nothing the store writes looks like them) rather than
// list them, and tells b.stray.
func (b *fileBlobs) Walk(ctx context.Context, fn func(digest.Digest) error) error {
	for _, alg := range algorithms {
		if err := b.walkAlgorithm(ctx, alg, fn); err != nil {
			return err
		}
	}
	return nil
}

func (b *fileBlobs) walkAlgorithm(ctx context.Context, alg digest.Algorithm, fn func(digest.Digest) error) error {
	return filepath.WalkDir(filepath.Join(b.root, string(alg)), func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		d := digest.NewDigestFromEncoded(alg, e.Name())
		if checkDigest(d) != nil || blobPath(b.root, d) != path {
			if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			if b.stray != nil {
				b.stray(path)
			}
			return nil
		}
		return fn(d)
	})
}

// CommitFile renames the file at path, synced, into the blob tree and
// syncs the directory. path must be on the tree's filesystem.
func (b *fileBlobs) CommitFile(_ context.Context, d digest.Digest, path string) error {
	final := blobPath(b.root, d)
	if err := makeDir(filepath.Dir(final)); err != nil {
		return err
	}
	if err := os.Rename(path, final); err != nil {
		return err
	}
	return syncDir(filepath.Dir(final))
}

// fileWriter is a temp file on its way to becoming the blob file final.
type fileWriter struct {
	final string
	f     *os.File
	out   *writebackFile // writes to f, starting writeback chunk by chunk

	mu sync.Mutex
	// done: committed (the temp name is gone) or aborted (removed).
	done bool
}

var _ blobstore.Writer = (*fileWriter)(nil)

func (w *fileWriter) Write(p []byte) (int, error) { return w.out.Write(p) }

func (w *fileWriter) ReadAt(p []byte, off int64) (int, error) { return w.f.ReadAt(p, off) }

// Commit syncs the temp file, renames it into the blob tree and syncs the
// directory, so that the file and its name survive a crash.
func (w *fileWriter) Commit(context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return errors.New("commit: writer already committed or aborted")
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("sync temp file: %w", err)
	}
	crashPoint(stepSynced)
	if err := makeDir(filepath.Dir(w.final)); err != nil {
		return err
	}
	if err := os.Rename(w.f.Name(), w.final); err != nil {
		return err
	}
	w.done = true
	if err := syncDir(filepath.Dir(w.final)); err != nil {
		os.Remove(w.final)
		return err
	}
	return nil
}

// Abort removes the temp file unless it was renamed into place.
func (w *fileWriter) Abort() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.abortLocked()
}

func (w *fileWriter) abortLocked() error {
	if w.done {
		return nil
	}
	w.done = true
	return os.Remove(w.f.Name())
}

// Close closes the file, removing it first if it is still a temp file.
func (w *fileWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return errors.Join(w.abortLocked(), w.f.Close())
}
