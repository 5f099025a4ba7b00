package cache

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/cache/blobstore"
	"github.com/regmirror/regmirror/cache/storagetest"
)

func newTestFileBlobs(t *testing.T, stray func(string)) *fileBlobs {
	t.Helper()
	dir := t.TempDir()
	b, err := newFileBlobs(filepath.Join(dir, "blobs"), filepath.Join(dir, "tmp"), stray)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The blob files pass the storage contract.
func TestFileBlobsContract(t *testing.T) {
	t.Parallel()
	storagetest.Run(t, func(t *testing.T) blobstore.Interface { return newTestFileBlobs(t, nil) })
}

// The local store promises more than the contract: a blob file removed
// under a reader is read to its end, and the reader is an *os.File, which
// the HTTP layer sends with sendfile.
func TestFileBlobsReaderOutlivesRemoval(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newTestFileBlobs(t, nil)
	data, d := randomBlob(t, 3*copyBufferSize+5)
	w, err := b.Create(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	f, err := b.Open(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, ok := f.(*os.File); !ok {
		t.Fatalf("Open returned a %T, want an *os.File", f)
	}
	if err := b.Remove(ctx, d); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(f)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes of a removed blob (%v), want all %d", len(got), err, len(data))
	}
}

// Files in the blob tree that cannot be blobs are removed by Walk, not
// listed, and reported.
func TestFileBlobsWalkRemovesStrays(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var strays []string
	b := newTestFileBlobs(t, func(path string) { strays = append(strays, path) })
	data, d := randomBlob(t, 10)
	w, err := b.Create(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Write(data)
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	misplaced := digest.FromString("misplaced")
	paths := []string{
		filepath.Join(b.root, "sha256", "ab", "not-a-digest"),
		filepath.Join(b.root, "sha256", "00", misplaced.Encoded()),
	}
	for _, p := range paths {
		if err := os.MkdirAll(filepath.Dir(p), dirMode); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), fileMode); err != nil {
			t.Fatal(err)
		}
	}
	var listed []digest.Digest
	if err := b.Walk(ctx, func(d digest.Digest) error { listed = append(listed, d); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(listed, []digest.Digest{d}) {
		t.Fatalf("walk = %v, want [%s]", listed, d)
	}
	slices.Sort(strays)
	slices.Sort(paths)
	if !slices.Equal(strays, paths) {
		t.Fatalf("strays reported %v, want %v", strays, paths)
	}
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("stray %s still there", p)
		}
	}
}

// copyingStore is a blob store that cannot take a file as a blob, as a
// bucket cannot; it counts the blobs written into it.
type copyingStore struct {
	blobstore.Interface
	created atomic.Int64
}

func (c *copyingStore) Create(ctx context.Context, d digest.Digest) (blobstore.Writer, error) {
	c.created.Add(1)
	return c.Interface.Create(ctx, d)
}

// A pushed blob goes through the blob store: copied in when the store
// cannot take the upload's file, which is gone afterwards either way.
func TestUploadCommitsIntoAStoreWithoutFiles(t *testing.T) {
	t.Parallel()
	s := openStore(t, Options{})
	store := &copyingStore{Interface: s.blobs}
	s.blobs = store
	h := openHosted(t, s)
	data, _ := randomBlob(t, 3*copyBufferSize+1)
	d := pushBlob(t, h, "team/app", data)
	if n := store.created.Load(); n != 1 {
		t.Fatalf("blobs created in the store: %d, want 1", n)
	}
	if got := readCached(t, s, d); !bytes.Equal(got, data) {
		t.Fatal("wrong bytes for the pushed blob")
	}
	if names := dirEntries(t, h.uploadDir); len(names) != 0 {
		t.Fatalf("upload dir after the commit: %v, want empty", names)
	}
}
