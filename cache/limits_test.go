package cache

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"
)

// endlessBody hands out zeros forever and counts them.
type endlessBody struct{ read atomic.Int64 }

func (b *endlessBody) Read(p []byte) (int, error) {
	clear(p)
	b.read.Add(int64(len(p)))
	return len(p), nil
}

func (b *endlessBody) Close() error { return nil }

func TestFetchBlobCapsUpstreamBodies(t *testing.T) {
	t.Parallel()
	const limit = 4 * copyBufferSize
	data, d := randomBlob(t, limit)
	tests := []struct {
		name     string
		size     int64 // announced; -1: unknown
		endless  bool
		wantErr  error
		maxBytes int64 // the most the cache may read from upstream
	}{
		{name: "endless body of unknown length", size: -1, endless: true, wantErr: ErrBlobTooLarge, maxBytes: limit + copyBufferSize},
		{name: "announced larger than the cap", size: limit + 1, endless: true, wantErr: ErrBlobTooLarge, maxBytes: 0},
		{name: "endless body announced within the cap", size: limit, endless: true, wantErr: ErrSizeMismatch, maxBytes: limit + copyBufferSize},
		{name: "exactly the cap, size unknown", size: -1, maxBytes: limit},
		{name: "exactly the cap, size announced", size: limit, maxBytes: limit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := openStore(t, Options{Limits: Limits{MaxBlobSize: limit}})
			var body io.ReadCloser = io.NopCloser(bytes.NewReader(data))
			endless := &endlessBody{}
			if tt.endless {
				body = endless
			}
			fetch := func(context.Context) (io.ReadCloser, int64, error) { return body, tt.size, nil }

			rc, _, _, err := s.FetchBlob(context.Background(), testRepo, d, 0, whole(fetch))
			if err == nil {
				_, err = io.ReadAll(rc)
				rc.Close()
			}
			if !errors.Is(err, tt.wantErr) && (tt.wantErr != nil || err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if got := endless.read.Load(); got > tt.maxBytes {
				t.Errorf("read %d bytes from upstream, want at most %d", got, tt.maxBytes)
			}
			if tt.wantErr != nil {
				assertNotCached(t, s, d)
			} else if got := fetchAll(t, s, d, failFetch(t)); !bytes.Equal(got, data) {
				t.Error("the blob at the cap was not cached")
			}
		})
	}
}

// A download nobody reads any more stops unless it is worth keeping: size
// known and within what the cache keeps. Its temp file goes, and the next
// request starts a fresh download.
func TestAbandonedFillsStopUnlessWorthKeeping(t *testing.T) {
	t.Parallel()
	data, d := randomBlob(t, 4*copyBufferSize)
	size := int64(len(data))
	tests := []struct {
		name             string
		announced        int64
		maxKept          int64
		leaveBeforeStart bool
		wantStop         bool
	}{
		{name: "size unknown", announced: -1, wantStop: true},
		{name: "too large to keep", announced: size, maxKept: size - 1, wantStop: true},
		{name: "size unknown, reader gone before the start", announced: -1, leaveBeforeStart: true, wantStop: true},
		{name: "known size within the budget", announced: size, wantStop: false},
		{name: "known size, reader gone before the start", announced: size, leaveBeforeStart: true, wantStop: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := openStore(t, Options{Limits: Limits{MaxKeptSize: tt.maxKept}})
			pr, pw := io.Pipe()
			t.Cleanup(func() { pw.CloseWithError(errors.New("test over")) })
			fetching, started := make(chan struct{}), make(chan struct{})
			var calls atomic.Int32
			fetch := func(context.Context) (io.ReadCloser, int64, error) {
				calls.Add(1)
				close(fetching)
				<-started
				return pr, tt.announced, nil
			}

			ctx, hangUp := context.WithCancel(context.Background())
			defer hangUp()
			sent := 0 // bytes upstream has sent
			if tt.leaveBeforeStart {
				failed := make(chan error, 1)
				go func() {
					_, _, _, err := s.FetchBlob(ctx, testRepo, d, 0, whole(fetch))
					failed <- err
				}()
				<-fetching
				hangUp() // while upstream has not answered yet
				if err := <-failed; !errors.Is(err, context.Canceled) {
					t.Fatalf("FetchBlob after hang-up: %v, want context.Canceled", err)
				}
				close(started)
			} else {
				close(started)
				rc, _, _, err := s.FetchBlob(ctx, testRepo, d, 0, whole(fetch))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := pw.Write(data[:copyBufferSize]); err != nil {
					t.Fatal(err)
				}
				sent = copyBufferSize
				if _, err := io.ReadFull(rc, make([]byte, 100)); err != nil {
					t.Fatal(err)
				}
				rc.Close() // the only reader leaves
			}

			if !tt.wantStop {
				if _, err := pw.Write(data[sent:]); err != nil {
					t.Fatalf("the download stopped: %v", err)
				}
				pw.Close()
				s.fills.Wait()
				if got := fetchAll(t, s, d, failFetch(t)); !bytes.Equal(got, data) {
					t.Fatal("the completed download was not cached")
				}
				return
			}
			s.fills.Wait() // returns once the download stopped
			if _, err := pw.Write(data[sent:]); !errors.Is(err, io.ErrClosedPipe) {
				t.Fatalf("the upstream body is still read (write: %v)", err)
			}
			assertNotCached(t, s, d)
			if got := fetchAll(t, s, d, bytesFetch(data, size, &calls)); !bytes.Equal(got, data) || calls.Load() != 2 {
				t.Fatalf("the next request got the blob %v after %d fetches, want a fresh one", bytes.Equal(got, data), calls.Load())
			}
		})
	}
}

// A download has a wall-clock limit besides the stall timeout.
func TestFillTimeout(t *testing.T) {
	t.Parallel()
	s := openStore(t, Options{StallTimeout: time.Hour, Limits: Limits{FillTimeout: 20 * time.Millisecond}})
	_, d := randomBlob(t, 1000)
	var calls atomic.Int32
	fetch, _ := pipeFetch(t, 1000, &calls) // never ends
	rc, _, _, err := s.FetchBlob(context.Background(), testRepo, d, 0, fetch)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	_, err = io.ReadAll(rc)
	if !errors.Is(err, ErrFillTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Read: err = %v, want ErrFillTimeout and context.DeadlineExceeded", err)
	}
	assertNotCached(t, s, d)
}
