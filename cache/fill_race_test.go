package cache

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// pull is a blob pull as the mirror makes it: a lookup, then Open when the
// repository holds the blob, else Fetch.
func pull(ctx context.Context, s *Store, repo string, d digest.Digest, fetch fetchFunc) (io.ReadCloser, error) {
	l, err := s.LookupBlob(ctx, repo, d)
	if err != nil {
		return nil, err
	}
	if l.Stored() && l.Linked() {
		rc, _, err := l.Open(ctx, 0)
		if err == nil {
			return rc, nil
		}
	}
	rc, _, _, err := l.Fetch(ctx, 0, fetch)
	return rc, err
}

// Concurrent pulls of a new blob for two repositories download it at most
// once for each, whether they join its download, find it committed, or
// look it up while it is being indexed; a pull that finds it committed
// for the other repository only is told its repository does not hold it.
func TestConcurrentPullsDownloadOncePerRepository(t *testing.T) {
	s := openStore(t, Options{})
	data, d := randomBlob(t, 128<<10)
	ctx := t.Context()
	const other = "docker.io/other/app"
	var calls, otherCalls atomic.Int32
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			repo, counter := testRepo, &calls
			if i%4 == 3 {
				repo, counter = other, &otherCalls
			}
			rc, err := pull(ctx, s, repo, d, bytesFetch(data, int64(len(data)), counter))
			var notHeld *NotLinkedError
			switch {
			case errors.As(err, &notHeld): // the other repository's download committed first
			case err != nil:
				t.Errorf("pull for %s: %v", repo, err)
			default:
				if err := readAllEqual(rc, data); err != nil {
					t.Errorf("pull for %s: %v", repo, err)
				}
			}
		}()
	}
	wg.Wait()
	if n, m := calls.Load(), otherCalls.Load(); n > 1 || m > 1 || n+m == 0 {
		t.Fatalf("the pulls for each repository fetched the blob %d and %d times; want at most once each, and once in all", n, m)
	}
}

// Hosted uploads of one blob to several repositories commit at the same
// time as pulls of it for a cached repository: every upload links it,
// and every pull is served its bytes or told its repository does not
// hold it.
func TestHostedUploadsOfOneBlobRacePulls(t *testing.T) {
	s := openStore(t, Options{})
	h := openHosted(t, s)
	data, d := randomBlob(t, 64<<10)
	ctx := t.Context()
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			name := []string{"team/a", "team/b", "team/c"}[i%3]
			if got := pushBlob(t, h, name, data); got != d {
				t.Errorf("pushed %s, want %s", got, d)
			}
		}()
		go func() {
			defer wg.Done()
			rc, err := pull(ctx, s, testRepo, d, bytesFetch(data, int64(len(data)), nil))
			var notHeld *NotLinkedError
			switch {
			case errors.As(err, &notHeld):
			case err != nil:
				t.Errorf("pull: %v", err)
			default:
				if err := readAllEqual(rc, data); err != nil {
					t.Errorf("pull: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	for _, name := range []string{"team/a", "team/b", "team/c"} {
		rc, _, err := h.OpenBlob(ctx, name, d, 0)
		if err != nil {
			t.Fatalf("OpenBlob in %s: %v", name, err)
		}
		if err := readAllEqual(rc, data); err != nil {
			t.Fatalf("OpenBlob in %s: %v", name, err)
		}
	}
	if got := readCached(t, s, d); !bytes.Equal(got, data) {
		t.Fatal("the stored blob is not the uploaded one")
	}
}

// chunkedFetch serves body in small reads, its size unknown, so that a
// download runs while readers come and go and is abandoned when the last
// leaves.
func chunkedFetch(body []byte, calls *atomic.Int32) fetchFunc {
	return whole(func(context.Context) (io.ReadCloser, int64, error) {
		calls.Add(1)
		return io.NopCloser(&slowReader{r: bytes.NewReader(body)}), -1, nil
	})
}

type slowReader struct{ r *bytes.Reader }

func (s *slowReader) Read(p []byte) (int, error) { return s.r.Read(p[:min(len(p), 512)]) }

// Readers of a download not worth finishing leave while others join:
// whoever joins an abandoned download waits for its end and starts a new
// one, and a reader that stays to the end reads the whole blob.
func TestAbandonmentRacesJoiners(t *testing.T) {
	s := openStore(t, Options{})
	data, d := randomBlob(t, 256<<10)
	ctx := t.Context()
	var calls atomic.Int32
	var wg sync.WaitGroup
	for i := range 24 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rc, _, _, err := s.FetchBlob(ctx, testRepo, d, 0, chunkedFetch(data, &calls))
			if err != nil {
				t.Errorf("FetchBlob: %v", err)
				return
			}
			if i%3 != 0 {
				rc.Read(make([]byte, 100)) // leaves early
				rc.Close()
				return
			}
			if err := readAllEqual(rc, data); err != nil {
				t.Errorf("a reader that stayed: %v", err)
			}
		}()
	}
	wg.Wait()
	if calls.Load() == 0 {
		t.Fatal("nothing was fetched")
	}
}

// Close while pulls have joined downloads and others are starting or
// joining them: the joined ones fail with ErrClosed, those racing Close
// fail too (the Store is closing under them), and Close waits for every
// download and leaves no temp file.
func TestCloseRacesStartsAndJoins(t *testing.T) {
	s, err := Open(context.Background(), Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	data, d := randomBlob(t, 64<<10)
	var calls atomic.Int32
	fetch, upstream := pipeFetch(t, int64(len(data)), &calls)
	go upstream.Write(data[:1000])
	ctx := t.Context()
	const other = "docker.io/other/app"
	var wg sync.WaitGroup
	pulls := func(n int, check func(error)) {
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				repo := []string{testRepo, other}[i%2]
				rc, _, _, err := s.FetchBlob(ctx, repo, d, 0, fetch)
				if err == nil {
					_, err = io.ReadAll(rc)
					rc.Close()
				}
				check(err)
			}()
		}
	}
	pulls(8, func(err error) {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("a pull joined before Close: %v; want ErrClosed", err)
		}
	})
	waitReaders(t, s, fillKey{d, testRepo}, 4)
	waitReaders(t, s, fillKey{d, other}, 4)
	pulls(8, func(err error) {
		if err == nil {
			t.Error("a pull racing Close read a blob upstream never finished")
		}
	})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if files := dirEntries(t, s.tmpDir); len(files) != 0 {
		t.Errorf("temp dir holds %v after Close", files)
	}
}

// A download whose fetch outlives the fill time limit before it answers
// fails its caller and its joiners with ErrFillTimeout.
func TestFillTimeoutBeforeTheFirstAnswer(t *testing.T) {
	s := openStore(t, Options{StallTimeout: time.Hour, Limits: Limits{FillTimeout: 20 * time.Millisecond}})
	_, d := randomBlob(t, 1000)
	joined := make(chan struct{})
	fetch := whole(func(ctx context.Context) (io.ReadCloser, int64, error) {
		<-joined
		<-ctx.Done()
		return nil, 0, ctx.Err()
	})
	ctx := t.Context()
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			_, _, _, err := s.FetchBlob(ctx, testRepo, d, 0, fetch)
			errs <- err
		}()
	}
	waitReaders(t, s, fillKey{d, testRepo}, 2)
	close(joined)
	for range 2 {
		if err := <-errs; !errors.Is(err, ErrFillTimeout) {
			t.Errorf("FetchBlob: %v; want ErrFillTimeout", err)
		}
	}
}

// waitReaders waits until the download for k has n readers.
func waitReaders(t *testing.T, s *Store, k fillKey, n int) {
	t.Helper()
	for {
		s.downloads.Lock()
		f, ok := s.downloads.LookupLocked(k)
		readers := 0
		if ok {
			readers = f.Value().readers
		}
		s.downloads.Unlock()
		if readers >= n {
			return
		}
		select {
		case <-t.Context().Done():
			t.Fatal("test ended before the readers joined")
		case <-time.After(time.Millisecond):
		}
	}
}
