package cache

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/cache/index"
)

// readCounter counts the reads of the index: each View, Get and Has is one
// snapshot of it.
type readCounter struct {
	index.DB
	reads atomic.Int64
}

func (c *readCounter) Get(ctx context.Context, key []byte) ([]byte, error) {
	c.reads.Add(1)
	return c.DB.Get(ctx, key)
}

func (c *readCounter) Has(ctx context.Context, key []byte) (bool, error) {
	c.reads.Add(1)
	return c.DB.Has(ctx, key)
}

func (c *readCounter) View(ctx context.Context, fn func(index.Reader) error) error {
	c.reads.Add(1)
	return c.DB.View(ctx, fn)
}

// A pull of a blob reads the index once: a cold one from the lookup to the
// end of its download, a warm one from the lookup to the end of its body.
func TestABlobPullReadsTheIndexOnce(t *testing.T) {
	counter := &readCounter{}
	s := openStore(t, Options{wrapIndex: func(db index.DB) index.DB {
		counter.DB = db
		return counter
	}})
	<-s.counted // Open counts the index in the background
	data, d := randomBlob(t, 1<<20)
	ctx := t.Context()

	counter.reads.Store(0)
	l, err := s.LookupBlob(ctx, testRepo, d)
	if err != nil || l.Stored() {
		t.Fatalf("LookupBlob of a new blob: stored %v, %v", l != nil && l.Stored(), err)
	}
	var calls atomic.Int32
	rc, _, _, err := l.Fetch(ctx, 0, bytesFetch(data, int64(len(data)), &calls))
	if err != nil {
		t.Fatal(err)
	}
	readAllAndClose(t, rc, data)
	if n := counter.reads.Load(); n != 1 || calls.Load() != 1 {
		t.Fatalf("a cold pull read the index %d times and fetched %d times; want 1 and 1", n, calls.Load())
	}

	counter.reads.Store(0)
	l, err = s.LookupBlob(ctx, testRepo, d)
	if err != nil || !l.Stored() || !l.Linked() {
		t.Fatalf("LookupBlob after the download: stored %v, linked %v, %v", l.Stored(), l.Linked(), err)
	}
	rc, _, err = l.Open(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	readAllAndClose(t, rc, data)
	if n := counter.reads.Load(); n != 1 {
		t.Fatalf("a warm pull read the index %d times, want 1", n)
	}
}

// A lookup that found no blob does not let a download start twice: a blob
// indexed since (for another repository) is found before fetching, and the
// caller learns that its repository does not hold it.
func TestLookupFetchLooksAgainAfterABlobWasIndexed(t *testing.T) {
	s := openStore(t, Options{})
	data, d := randomBlob(t, 64<<10)
	ctx := t.Context()
	l, err := s.LookupBlob(ctx, testRepo, d)
	if err != nil {
		t.Fatal(err)
	}
	rc, _, _, err := s.FetchBlob(ctx, "docker.io/other/app", d, 0, bytesFetch(data, int64(len(data)), nil))
	if err != nil {
		t.Fatal(err)
	}
	readAllAndClose(t, rc, data)

	var calls atomic.Int32
	_, _, _, err = l.Fetch(ctx, 0, bytesFetch(data, int64(len(data)), &calls))
	var notHeld *NotLinkedError
	if !errors.As(err, &notHeld) || calls.Load() != 0 {
		t.Fatalf("Fetch after another repository's download: %v, %d fetches; want not held and none", err, calls.Load())
	}
}

func readAllAndClose(t *testing.T, rc io.ReadCloser, want []byte) {
	t.Helper()
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(got) != string(want) {
		t.Fatalf("read %d bytes, %v; want the blob's %d", len(got), err, len(want))
	}
}

// JoinDownload joins a download in flight, or reads what it committed,
// and never starts one: with neither, it fails as absent and leaves no
// download behind for a real pull to join.
func TestJoinDownloadNeverStartsADownload(t *testing.T) {
	s := openStore(t, Options{})
	data, d := randomBlob(t, 64<<10)
	ctx := t.Context()
	if _, _, err := s.JoinDownload(ctx, testRepo, d, 0); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("JoinDownload with nothing in flight: %v, want fs.ErrNotExist", err)
	}
	if repos := s.Downloading(d); len(repos) != 0 {
		t.Fatalf("JoinDownload left a download for %v", repos)
	}

	release := make(chan struct{})
	var calls atomic.Int32
	held := whole(func(context.Context) (io.ReadCloser, int64, error) {
		calls.Add(1)
		<-release
		return io.NopCloser(bytes.NewReader(data)), int64(len(data)), nil
	})
	started := make(chan io.ReadCloser)
	go func() {
		rc, _, _, err := s.FetchBlob(ctx, testRepo, d, 0, held)
		if err != nil {
			t.Error(err)
		}
		started <- rc
	}()
	for len(s.Downloading(d)) == 0 {
		time.Sleep(time.Millisecond)
	}
	joined := make(chan io.ReadCloser)
	go func() { // it follows the download, which waits for release
		rc, _, err := s.JoinDownload(ctx, testRepo, d, 0)
		if err != nil {
			t.Errorf("JoinDownload of a download in flight: %v", err)
		}
		joined <- rc
	}()
	for readers(s, d) < 2 {
		time.Sleep(time.Millisecond)
	}
	close(release)
	if rc := <-joined; rc != nil {
		readAllAndClose(t, rc, data)
	}
	readAllAndClose(t, <-started, data)
	if calls.Load() != 1 {
		t.Fatalf("%d fetches, want 1", calls.Load())
	}
	rc, _, err := s.JoinDownload(ctx, testRepo, d, 0)
	if err != nil {
		t.Fatalf("JoinDownload after the commit: %v", err)
	}
	readAllAndClose(t, rc, data)
}

// readers is how many readers the download of d for testRepo has.
func readers(s *Store, d digest.Digest) int {
	s.downloads.Lock()
	defer s.downloads.Unlock()
	f, ok := s.downloads.LookupLocked(fillKey{d, testRepo})
	if !ok {
		return 0
	}
	return f.Value().readers
}
