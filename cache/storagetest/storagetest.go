// Package storagetest is the contract suite of blobstore.Interface: every
// implementation of the cache's blob storage runs Run against itself in
// its own tests, the local filesystem today, an S3 bucket next.
package storagetest

import (
	"bytes"
	"context"
	"crypto/sha512"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/cache/blobstore"
)

// Run runs the contract against the stores newStore makes: each subtest
// gets a new, empty store of its own, which newStore cleans up (with
// t.Cleanup) when the subtest ends.
func Run(t *testing.T, newStore func(t *testing.T) blobstore.Interface) {
	tests := []struct {
		name string
		run  func(*testing.T, blobstore.Interface)
	}{
		{"CommitPublishesAtOnce", testCommitPublishesAtOnce},
		{"CommitTwice", testCommitTwice},
		{"ReadAtOffsets", testReadAtOffsets},
		{"MissingIsNotExist", testMissingIsNotExist},
		{"WriterReadsWhatItWrote", testWriterReadsWhatItWrote},
		{"ConcurrentWritersOfOneDigest", testConcurrentWriters},
		{"RemoveUnderReader", testRemoveUnderReader},
		{"AbandonedWritesLeaveNothing", testAbandonedWrites},
		{"WalkListsEveryBlobOnce", testWalkListsEveryBlobOnce},
		{"WalkStops", testWalkStops},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, newStore(t))
		})
	}
}

// blob makes n random bytes and their sha256 digest, distinct per seed.
func blob(seed uint64, n int) ([]byte, digest.Digest) {
	data := make([]byte, n)
	rng := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), 's', 't'})
	rng.Read(data)
	return data, digest.FromBytes(data)
}

// Put writes and commits data as d, failing the test on any error: for
// the tests of the stores, as for the suite.
func Put(t testing.TB, s blobstore.Interface, d digest.Digest, data []byte) {
	t.Helper()
	ctx := context.Background()
	w, err := s.Create(ctx, d)
	if err != nil {
		t.Fatalf("create %s: %v", d, err)
	}
	defer w.Close()
	if _, err := w.Write(data); err != nil {
		t.Fatalf("write %s: %v", d, err)
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatalf("commit %s: %v", d, err)
	}
}

// readAll opens d and reads it from its start.
func readAll(t *testing.T, s blobstore.Interface, d digest.Digest) []byte {
	t.Helper()
	f, err := s.Open(context.Background(), d)
	if err != nil {
		t.Fatalf("open %s: %v", d, err)
	}
	defer f.Close()
	got, err := io.ReadAll(f)
	if err != nil {
		t.Fatalf("read %s: %v", d, err)
	}
	return got
}

// assertAbsent checks that d is absent to Open, Stat and Walk.
func assertAbsent(t *testing.T, s blobstore.Interface, d digest.Digest) {
	t.Helper()
	ctx := context.Background()
	if f, err := s.Open(ctx, d); !errors.Is(err, fs.ErrNotExist) {
		if err == nil {
			f.Close()
		}
		t.Errorf("open %s: err = %v, want fs.ErrNotExist", d, err)
	}
	if _, err := s.Stat(ctx, d); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stat %s: err = %v, want fs.ErrNotExist", d, err)
	}
	if listed := walk(t, s); slices.Contains(listed, d) {
		t.Errorf("walk lists %s, want it absent", d)
	}
}

// walk lists every blob of s.
func walk(t *testing.T, s blobstore.Interface) []digest.Digest {
	t.Helper()
	var ds []digest.Digest
	if err := s.Walk(context.Background(), func(d digest.Digest) error {
		ds = append(ds, d)
		return nil
	}); err != nil {
		t.Fatalf("walk: %v", err)
	}
	return ds
}

// Written bytes are invisible until Commit, then visible whole.
func testCommitPublishesAtOnce(t *testing.T, s blobstore.Interface) {
	ctx := context.Background()
	data, d := blob(1, 300<<10)
	w, err := s.Create(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Write(data[:len(data)/2]); err != nil {
		t.Fatal(err)
	}
	assertAbsent(t, s, d)
	if _, err := w.Write(data[len(data)/2:]); err != nil {
		t.Fatal(err)
	}
	assertAbsent(t, s, d)
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, s, d); !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes after commit, want the %d written", len(got), len(data))
	}
	info, err := s.Stat(ctx, d)
	if err != nil || info.Size != int64(len(data)) {
		t.Fatalf("stat = %+v, %v; want size %d", info, err, len(data))
	}
	if err := w.Abort(); err != nil {
		t.Fatalf("abort after commit: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("close after commit: %v", err)
	}
	if got := readAll(t, s, d); !bytes.Equal(got, data) {
		t.Fatal("abort or close after commit changed the blob")
	}
}

// Committing a digest that is stored already is fine: it stays once.
func testCommitTwice(t *testing.T, s blobstore.Interface) {
	data, d := blob(2, 1000)
	Put(t, s, d, data)
	Put(t, s, d, data)
	if got := readAll(t, s, d); !bytes.Equal(got, data) {
		t.Fatal("wrong bytes after the second commit")
	}
	if listed := walk(t, s); !slices.Equal(listed, []digest.Digest{d}) {
		t.Fatalf("walk = %v, want [%s]", listed, d)
	}
}

// A blob reads from any offset, with Seek or ReadAt; past the end is EOF.
func testReadAtOffsets(t *testing.T, s blobstore.Interface) {
	data, d := blob(3, 200<<10+3)
	Put(t, s, d, data)
	size := int64(len(data))
	f, err := s.Open(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() != size {
		t.Fatalf("file stat = %v, %v; want size %d", fi, err, size)
	}
	for _, off := range []int64{0, 1, size / 2, size - 1} {
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			t.Fatalf("seek %d: %v", off, err)
		}
		got, err := io.ReadAll(f)
		if err != nil || !bytes.Equal(got, data[off:]) {
			t.Fatalf("read from %d: %d bytes, %v; want the %d from there", off, len(got), err, size-off)
		}
		p := make([]byte, size-off)
		if n, err := f.ReadAt(p, off); n != len(p) || (err != nil && err != io.EOF) || !bytes.Equal(p, data[off:]) {
			t.Fatalf("ReadAt %d: %d bytes, %v; want %d", off, n, err, len(p))
		}
	}
	for _, off := range []int64{size, size + 1, size + 1<<20} {
		if n, err := f.ReadAt(make([]byte, 10), off); n != 0 || err != io.EOF {
			t.Fatalf("ReadAt %d of %d bytes: %d, %v; want 0, io.EOF", off, size, n, err)
		}
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			t.Fatalf("seek %d: %v", off, err)
		}
		if n, err := f.Read(make([]byte, 10)); n != 0 || err != io.EOF {
			t.Fatalf("read at %d of %d bytes: %d, %v; want 0, io.EOF", off, size, n, err)
		}
	}
	p := make([]byte, 10)
	if n, err := f.ReadAt(p, size-4); n != 4 || err != io.EOF || !bytes.Equal(p[:4], data[size-4:]) {
		t.Fatalf("ReadAt across the end: %d, %v; want 4, io.EOF", n, err)
	}
}

// Open, Stat and Remove of a blob never stored fail with fs.ErrNotExist;
// so do those of a removed one.
func testMissingIsNotExist(t *testing.T, s blobstore.Interface) {
	ctx := context.Background()
	_, d := blob(4, 10)
	assertAbsent(t, s, d)
	if err := s.Remove(ctx, d); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("remove of a missing blob: %v, want fs.ErrNotExist", err)
	}
	data, d := blob(5, 10)
	Put(t, s, d, data)
	if err := s.Remove(ctx, d); err != nil {
		t.Fatal(err)
	}
	assertAbsent(t, s, d)
	if err := s.Remove(ctx, d); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("second remove: %v, want fs.ErrNotExist", err)
	}
}

// A reader following a download reads the writer's bytes as they come,
// and after Commit, until Close.
func testWriterReadsWhatItWrote(t *testing.T, s blobstore.Interface) {
	ctx := context.Background()
	data, d := blob(6, 64<<10)
	w, err := s.Create(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var wg sync.WaitGroup
	written := make(chan int)
	wg.Go(func() {
		defer close(written)
		for off := 0; off < len(data); off += 4096 {
			if _, err := w.Write(data[off : off+4096]); err != nil {
				t.Error(err)
				return
			}
			written <- off + 4096
		}
	})
	p := make([]byte, len(data))
	for n := range written {
		if m, err := w.ReadAt(p[:n], 0); m != n || (err != nil && err != io.EOF) || !bytes.Equal(p[:n], data[:n]) {
			t.Fatalf("ReadAt of the first %d bytes written: %d, %v", n, m, err)
		}
	}
	wg.Wait()
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if m, err := w.ReadAt(p, 0); m != len(p) || (err != nil && err != io.EOF) || !bytes.Equal(p, data) {
		t.Fatalf("ReadAt after commit: %d, %v", m, err)
	}
}

// Writers of one digest may race; readers meanwhile see the blob whole or
// not at all, and afterwards it is stored once.
func testConcurrentWriters(t *testing.T, s blobstore.Interface) {
	ctx := context.Background()
	data, d := blob(7, 256<<10)
	const writers = 4
	var writing, reading sync.WaitGroup
	stop := make(chan struct{})
	reading.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			f, err := s.Open(ctx, d)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				t.Error(err)
				return
			}
			got, err := io.ReadAll(f)
			f.Close()
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("a reader got %d bytes (%v) of a blob of %d", len(got), err, len(data))
				return
			}
		}
	})
	for range writers {
		writing.Go(func() {
			w, err := s.Create(ctx, d)
			if err != nil {
				t.Error(err)
				return
			}
			defer w.Close()
			for off := 0; off < len(data); off += 16 << 10 {
				if _, err := w.Write(data[off : off+16<<10]); err != nil {
					t.Error(err)
					return
				}
			}
			if err := w.Commit(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	writing.Wait()
	close(stop)
	reading.Wait()
	if got := readAll(t, s, d); !bytes.Equal(got, data) {
		t.Fatal("wrong bytes after concurrent commits")
	}
	if listed := walk(t, s); !slices.Equal(listed, []digest.Digest{d}) {
		t.Fatalf("walk = %v, want [%s]", listed, d)
	}
}

// A File open when its blob is removed returns the blob's bytes or an
// error, never other bytes; the blob is gone for everyone else at once.
// (The local implementation's reader reads to the end: the cache's own
// tests check that.)
func testRemoveUnderReader(t *testing.T, s blobstore.Interface) {
	ctx := context.Background()
	data, d := blob(8, 300<<10)
	Put(t, s, d, data)
	f, err := s.Open(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	head := make([]byte, 1000)
	if _, err := io.ReadFull(f, head); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, d); err != nil {
		t.Fatal(err)
	}
	assertAbsent(t, s, d)
	rest, err := io.ReadAll(f)
	got := append(head, rest...)
	if !bytes.HasPrefix(data, got) {
		t.Fatalf("a reader of a removed blob got %d bytes that are not the blob's (%v)", len(got), err)
	}
}

// A write that is aborted, closed uncommitted, or simply left (as a crash
// leaves it) publishes nothing; a commit of the digest after it does.
func testAbandonedWrites(t *testing.T, s blobstore.Interface) {
	ctx := context.Background()
	data, d := blob(9, 100<<10)
	write := func() blobstore.Writer {
		w, err := s.Create(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(data[:len(data)-1]); err != nil {
			t.Fatal(err)
		}
		return w
	}
	aborted := write()
	if err := aborted.Abort(); err != nil {
		t.Fatalf("abort: %v", err)
	}
	if err := aborted.Commit(ctx); err == nil {
		t.Fatal("commit after abort succeeded")
	}
	aborted.Close()
	if err := write().Close(); err != nil {
		t.Fatalf("close uncommitted: %v", err)
	}
	left := write()
	defer left.Close()
	assertAbsent(t, s, d)
	Put(t, s, d, data)
	if got := readAll(t, s, d); !bytes.Equal(got, data) {
		t.Fatal("wrong bytes after abandoned writes")
	}
}

// Walk lists every committed blob exactly once, of either algorithm, and
// nothing written but not committed.
func testWalkListsEveryBlobOnce(t *testing.T, s blobstore.Interface) {
	ctx := context.Background()
	if listed := walk(t, s); len(listed) != 0 {
		t.Fatalf("walk of an empty store = %v", listed)
	}
	want := map[digest.Digest]bool{}
	for i := range 40 {
		data, d := blob(uint64(100+i), 10+i)
		Put(t, s, d, data)
		want[d] = true
	}
	big := []byte("a sha512 blob")
	d512 := digest.NewDigestFromBytes(digest.SHA512, sha512Sum(big))
	Put(t, s, d512, big)
	want[d512] = true
	removed := digest.FromString("removed")
	Put(t, s, removed, []byte("removed"))
	if err := s.Remove(ctx, removed); err != nil {
		t.Fatal(err)
	}
	_, pending := blob(99, 10)
	w, err := s.Create(ctx, pending)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Write([]byte("not committed")); err != nil {
		t.Fatal(err)
	}

	seen := map[digest.Digest]int{}
	for _, d := range walk(t, s) {
		seen[d]++
	}
	for d, n := range seen {
		if !want[d] || n != 1 {
			t.Errorf("walk listed %s %d times; want once if committed, else never", d, n)
		}
	}
	for d := range want {
		if seen[d] == 0 {
			t.Errorf("walk missed %s", d)
		}
	}
}

func sha512Sum(b []byte) []byte {
	sum := sha512.Sum512(b)
	return sum[:]
}

// Walk stops at the first error of its callback, and returns it, and
// fails once its context is done.
func testWalkStops(t *testing.T, s blobstore.Interface) {
	for i := range 5 {
		data, d := blob(uint64(200+i), 10)
		Put(t, s, d, data)
	}
	stop := fmt.Errorf("stop here")
	calls := 0
	err := s.Walk(context.Background(), func(digest.Digest) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("walk with a failing callback: %v after %d calls; want the callback's error after 1", err, calls)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Walk(ctx, func(digest.Digest) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("walk with a cancelled context: %v, want context.Canceled", err)
	}
}
