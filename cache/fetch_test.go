package cache

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/internal/testclock"
)

func TestFetchBlobDiscardsBadDownloads(t *testing.T) {
	t.Parallel()
	data, d := randomBlob(t, 2*copyBufferSize+5)
	size := int64(len(data))
	flipped := bytes.Clone(data)
	flipped[len(flipped)/2] ^= 0xff
	errUpstream := errors.New("connection reset")

	tests := []struct {
		name  string
		fetch fetchFunc
		want  error
	}{
		{name: "digest mismatch, same length", fetch: bytesFetch(flipped, size, nil), want: ErrDigestMismatch},
		{name: "digest mismatch, size unknown", fetch: bytesFetch(flipped, -1, nil), want: ErrDigestMismatch},
		{name: "truncated", fetch: bytesFetch(data[:size-10], size, nil), want: ErrSizeMismatch},
		{name: "empty body", fetch: bytesFetch(nil, size, nil), want: ErrSizeMismatch},
		{name: "longer than announced", fetch: bytesFetch(append(bytes.Clone(data), 'x'), size, nil), want: ErrSizeMismatch},
		{name: "truncated, size unknown", fetch: bytesFetch(data[:size-10], -1, nil), want: ErrDigestMismatch},
		{
			name: "upstream fails mid-body",
			fetch: whole(func(context.Context) (io.ReadCloser, int64, error) {
				body := io.MultiReader(bytes.NewReader(data[:size/2]), iotestErrReader{errUpstream})
				return io.NopCloser(body), size, nil
			}),
			want: errUpstream,
		},
		{
			name: "fetch fails",
			fetch: whole(func(context.Context) (io.ReadCloser, int64, error) {
				return nil, 0, errUpstream
			}),
			want: errUpstream,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := openStore(t, Options{})
			ctx := context.Background()

			// A download that fails before FetchBlob returns fails FetchBlob;
			// one that fails later fails Read. Either way nobody gets the blob.
			rc, _, _, err := s.FetchBlob(ctx, testRepo, d, 0, tt.fetch)
			if err == nil {
				var got []byte
				got, err = io.ReadAll(rc)
				rc.Close()
				if int64(len(got)) >= size {
					t.Errorf("reader delivered %d bytes of a bad %d-byte blob", len(got), size)
				}
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			assertNotCached(t, s, d)
			wantMismatches := 0.0
			if errors.Is(tt.want, ErrDigestMismatch) {
				wantMismatches = 1
			}
			if got := metricValue(t, s.metrics.digestMismatches); got != wantMismatches {
				t.Errorf("digest mismatches = %v, want %v", got, wantMismatches)
			}

			var calls atomic.Int32
			if got := fetchAll(t, s, d, bytesFetch(data, size, &calls)); !bytes.Equal(got, data) {
				t.Errorf("retry returned wrong bytes")
			}
			if calls.Load() != 1 {
				t.Errorf("retry fetched %d times, want 1", calls.Load())
			}
		})
	}
}

// iotestErrReader fails every Read with err.
type iotestErrReader struct{ err error }

func (r iotestErrReader) Read([]byte) (int, error) { return 0, r.err }

func TestFetchBlobCoalescesConcurrentMisses(t *testing.T) {
	t.Parallel()
	const callers = 50
	s := openStore(t, Options{})
	data, d := randomBlob(t, 3*copyBufferSize+1)
	var calls atomic.Int32
	fetch, upstream := pipeFetch(t, int64(len(data)), &calls)

	var joined, finished sync.WaitGroup
	var coalesced atomic.Int32
	bodies := make([][]byte, callers)
	for i := range callers {
		joined.Add(1)
		finished.Add(1)
		go func() {
			defer finished.Done()
			rc, _, wasCoalesced, err := s.FetchBlob(context.Background(), testRepo, d, 0, fetch)
			joined.Done()
			if err != nil {
				t.Errorf("FetchBlob: %v", err)
				return
			}
			defer rc.Close()
			if wasCoalesced {
				coalesced.Add(1)
			}
			if bodies[i], err = io.ReadAll(rc); err != nil {
				t.Errorf("Read: %v", err)
			}
		}()
	}
	joined.Wait() // every caller holds a reader before upstream sends a byte
	if _, err := upstream.Write(data); err != nil {
		t.Fatal(err)
	}
	upstream.Close()
	finished.Wait()

	if calls.Load() != 1 {
		t.Errorf("upstream fetched %d times, want 1", calls.Load())
	}
	if coalesced.Load() != callers-1 {
		t.Errorf("%d callers coalesced, want %d", coalesced.Load(), callers-1)
	}
	if got := metricValue(t, s.metrics.coalescedWaiters); got != callers-1 {
		t.Errorf("coalesced waiters metric = %v, want %d", got, callers-1)
	}
	for i, body := range bodies {
		if !bytes.Equal(body, data) {
			t.Fatalf("caller %d got %d bytes that differ from the blob", i, len(body))
		}
	}
	if files := dirEntries(t, s.blobRoot); len(files) != 1 {
		t.Errorf("blob tree holds %v, want one file", files)
	}
	if files := dirEntries(t, s.tmpDir); len(files) != 0 {
		t.Errorf("temp dir holds %v, want nothing", files)
	}
}

func TestFetchBlobLateJoinerReadsFromDiskThenFollows(t *testing.T) {
	t.Parallel()
	s := openStore(t, Options{})
	data, d := randomBlob(t, 4*copyBufferSize)
	half := len(data) / 2
	var calls atomic.Int32
	fetch, upstream := pipeFetch(t, int64(len(data)), &calls)
	ctx := context.Background()

	first, _, _, err := s.FetchBlob(ctx, testRepo, d, 0, fetch)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if _, err := upstream.Write(data[:half]); err != nil {
		t.Fatal(err)
	}
	firstHalf := make([]byte, half)
	if _, err := io.ReadFull(first, firstHalf); err != nil {
		t.Fatal(err)
	}

	const offset = 1000
	joiner, size, coalesced, err := s.FetchBlob(ctx, testRepo, d, offset, failFetch(t))
	if err != nil {
		t.Fatal(err)
	}
	defer joiner.Close()
	if !coalesced || size != int64(len(data)) {
		t.Errorf("joiner: coalesced %v size %d, want true %d", coalesced, size, len(data))
	}
	if _, err := upstream.Write(data[half:]); err != nil {
		t.Fatal(err)
	}
	upstream.Close()

	rest, err := io.ReadAll(first)
	if err != nil || !bytes.Equal(append(firstHalf, rest...), data) {
		t.Errorf("first reader: err %v, bytes match %v", err, bytes.Equal(append(firstHalf, rest...), data))
	}
	joined, err := io.ReadAll(joiner)
	if err != nil || !bytes.Equal(joined, data[offset:]) {
		t.Errorf("joiner: err %v, bytes match %v", err, bytes.Equal(joined, data[offset:]))
	}
	if calls.Load() != 1 {
		t.Errorf("upstream fetched %d times, want 1", calls.Load())
	}
}

func TestFetchBlobSurvivesFirstCallerHangingUp(t *testing.T) {
	t.Parallel()
	s := openStore(t, Options{})
	data, d := randomBlob(t, 2*copyBufferSize)
	half := len(data) / 2
	var calls atomic.Int32
	fetch, upstream := pipeFetch(t, int64(len(data)), &calls)

	ctx, hangUp := context.WithCancel(context.Background())
	first, _, _, err := s.FetchBlob(ctx, testRepo, d, 0, fetch)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := upstream.Write(data[:half]); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(first, make([]byte, half)); err != nil {
		t.Fatal(err)
	}
	hangUp()
	if n, err := first.Read(make([]byte, 1)); n != 0 || !errors.Is(err, context.Canceled) {
		t.Errorf("Read after hang-up = %d, %v; want 0, context.Canceled", n, err)
	}
	first.Close()

	// Nobody reads now, yet the download must go on and complete.
	if _, err := upstream.Write(data[half:]); err != nil {
		t.Fatal(err)
	}
	upstream.Close()
	if got := fetchAll(t, s, d, failFetch(t)); !bytes.Equal(got, data) {
		t.Errorf("blob after hang-up differs from upstream")
	}
	if calls.Load() != 1 {
		t.Errorf("upstream fetched %d times, want 1", calls.Load())
	}
}

func TestFetchBlobWithholdsFinalByteUntilVerified(t *testing.T) {
	t.Parallel()
	for _, announced := range []struct {
		name  string
		known bool
	}{{"size known", true}, {"size unknown", false}} {
		for _, verdict := range []struct {
			name     string
			corrupt  bool
			wantLast error
		}{{"verifies", false, nil}, {"mismatches", true, ErrDigestMismatch}} {
			t.Run(announced.name+"/"+verdict.name, func(t *testing.T) {
				t.Parallel()
				s := openStore(t, Options{})
				data, d := randomBlob(t, copyBufferSize+100)
				size := int64(-1)
				if announced.known {
					size = int64(len(data))
				}
				body := bytes.Clone(data)
				if verdict.corrupt {
					body[len(body)-1] ^= 0xff // only the last byte is wrong
				}
				var calls atomic.Int32
				fetch, upstream := pipeFetch(t, size, &calls)

				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				rc, _, _, err := s.FetchBlob(ctx, testRepo, d, 0, fetch)
				if err != nil {
					t.Fatal(err)
				}
				defer rc.Close()

				if _, err := upstream.Write(body); err != nil { // every byte, but no EOF yet
					t.Fatal(err)
				}
				waitWritten(t, s, d, int64(len(body)))
				got := make([]byte, len(body)-1)
				if _, err := io.ReadFull(rc, got); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, data[:len(data)-1]) {
					t.Fatal("first bytes differ")
				}
				// The last byte is on disk but unverified: the reader must
				// still be waiting for it, so its cancelled context wins.
				waiting, stopWaiting := context.WithCancel(context.Background())
				probe, _, _, err := s.FetchBlob(waiting, testRepo, d, int64(len(body)-1), failFetch(t))
				if err != nil {
					t.Fatal(err)
				}
				stopWaiting()
				if n, err := probe.Read(make([]byte, 1)); n != 0 || !errors.Is(err, context.Canceled) {
					t.Fatalf("Read of the unverified last byte = %d, %v; want 0, context.Canceled", n, err)
				}
				probe.Close()

				upstream.Close()
				last, err := io.ReadAll(rc)
				if !errors.Is(err, verdict.wantLast) {
					t.Fatalf("Read after EOF: err = %v, want %v", err, verdict.wantLast)
				}
				if verdict.wantLast == nil && !bytes.Equal(last, data[len(data)-1:]) {
					t.Errorf("last read = %x, want the final byte", last)
				}
				if verdict.wantLast != nil && len(last) != 0 {
					t.Errorf("a reader of a bad blob got its last byte")
				}
			})
		}
	}
}

func TestBlobOffsets(t *testing.T) {
	t.Parallel()
	data, d := randomBlob(t, copyBufferSize+3)
	size := int64(len(data))
	tests := []struct {
		name   string
		offset int64
	}{
		{"start", 0},
		{"second byte", 1},
		{"middle", size / 2},
		{"last byte", size - 1},
		{"end", size},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := openStore(t, Options{})
			ctx := context.Background()

			rc, gotSize, _, err := s.FetchBlob(ctx, testRepo, d, tt.offset, bytesFetch(data, size, nil))
			if err != nil {
				t.Fatalf("FetchBlob: %v", err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || gotSize != size || !bytes.Equal(got, data[tt.offset:]) {
				t.Errorf("cold FetchBlob at %d: %d bytes of %d, err %v; want %d bytes", tt.offset, len(got), gotSize, err, size-tt.offset)
			}

			rc, gotSize, err = s.ReadBlob(ctx, d, tt.offset)
			if err != nil {
				t.Fatalf("ReadBlob: %v", err)
			}
			got, err = io.ReadAll(rc)
			rc.Close()
			if err != nil || gotSize != size || !bytes.Equal(got, data[tt.offset:]) {
				t.Errorf("ReadBlob at %d: %d bytes of %d, err %v; want %d bytes", tt.offset, len(got), gotSize, err, size-tt.offset)
			}
		})
	}
}

func TestBlobOffsetsOutOfRange(t *testing.T) {
	t.Parallel()
	data, d := randomBlob(t, 100)
	size := int64(len(data))
	ctx := context.Background()

	s := openStore(t, Options{})
	if _, _, _, err := s.FetchBlob(ctx, testRepo, d, -1, bytesFetch(data, size, nil)); !errors.Is(err, ErrInvalidOffset) {
		t.Errorf("cold FetchBlob at -1: err = %v, want ErrInvalidOffset", err)
	}
	fetchAll(t, s, d, bytesFetch(data, size, nil))
	if _, _, err := s.ReadBlob(ctx, d, -1); !errors.Is(err, ErrInvalidOffset) {
		t.Errorf("ReadBlob at -1: err = %v, want ErrInvalidOffset", err)
	}

	// Past the end, the reader is at EOF and the size tells the caller why.
	atEOF := func(name string, rc io.ReadCloser, gotSize int64, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s past the end: %v", name, err)
		}
		defer rc.Close()
		if got, err := io.ReadAll(rc); err != nil || len(got) != 0 || gotSize != size {
			t.Errorf("%s past the end: %d bytes, size %d, err %v; want 0 bytes, size %d", name, len(got), gotSize, err, size)
		}
	}
	rc, gotSize, err := s.ReadBlob(ctx, d, size+1)
	atEOF("ReadBlob", rc, gotSize, err)
	cold := openStore(t, Options{})
	rc, gotSize, _, err = cold.FetchBlob(ctx, testRepo, d, size+1, bytesFetch(data, size, nil))
	atEOF("cold FetchBlob", rc, gotSize, err)
}

func TestReadBlobDropsDamagedFiles(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		damage func(path string) error
	}{
		{"missing", os.Remove},
		{"truncated", func(path string) error { return os.Truncate(path, 10) }},
		{"grown", func(path string) error {
			f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.Write([]byte("junk"))
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := openStore(t, Options{})
			ctx := context.Background()
			data, d := randomBlob(t, 1000)
			fetchAll(t, s, d, bytesFetch(data, int64(len(data)), nil))
			if err := tt.damage(blobPath(s.blobRoot, d)); err != nil {
				t.Fatal(err)
			}

			if _, _, err := s.ReadBlob(ctx, d, 0); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("ReadBlob of a damaged blob: err = %v, want fs.ErrNotExist", err)
			}
			if _, err := s.blobRow(ctx, d); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("index row survived: err = %v", err)
			}
			if got := metricValue(t, s.metrics.blobs); got != 0 {
				t.Errorf("blobs gauge = %v, want 0", got)
			}

			var calls atomic.Int32
			if got := fetchAll(t, s, d, bytesFetch(data, int64(len(data)), &calls)); !bytes.Equal(got, data) || calls.Load() != 1 {
				t.Errorf("refetch: %d calls, bytes match %v", calls.Load(), bytes.Equal(got, data))
			}
		})
	}
}

// A blob is served for the repositories that hold it only: those it was
// downloaded for, and those linked to it once their upstream proved it has
// the bytes. Another repository never joins a download in flight (which
// may be a hostile upstream's, bound to fail): it downloads through its own
// upstream. Once stored, the blob is refused to a repository that does not
// hold it until it is linked.
func TestFetchBlobServesOnlyLinkedRepositories(t *testing.T) {
	t.Parallel()
	s := openStore(t, Options{})
	data, d := randomBlob(t, 1000)
	var ownerCalls, otherCalls atomic.Int32
	fetch, upstream := pipeFetch(t, int64(len(data)), &ownerCalls)
	ctx := context.Background()
	const owner, other, confirmed = "docker.io/library/node", "docker.io/library/python", "ghcr.io/acme/app"

	rc, _, _, err := s.FetchBlob(ctx, owner, d, 0, fetch)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Downloading(d); !slices.Equal(got, []string{owner}) {
		t.Fatalf("Downloading = %v, want [%s]", got, owner)
	}
	if got := fetchAllFor(t, s, other, d, bytesFetch(data, int64(len(data)), &otherCalls)); !bytes.Equal(got, data) || otherCalls.Load() != 1 {
		t.Fatalf("another repository's fetch while the owner's is in flight: %d fetches, bytes match %v", otherCalls.Load(), bytes.Equal(got, data))
	}
	upstream.Write(data)
	upstream.Close()
	if got, err := io.ReadAll(rc); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("owner read: %v, bytes match %v", err, bytes.Equal(got, data))
	}
	rc.Close()
	assertNotLinked(t, s, confirmed, d)

	if err := s.Link(ctx, confirmed, d); err != nil {
		t.Fatal(err)
	}
	rc, _, _, err = s.FetchBlob(ctx, confirmed, d, 0, failFetch(t)) // a hit
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if got, want := repositoriesUsing(t, s, d), []string{owner, other, confirmed}; !slices.Equal(got, want) {
		t.Fatalf("repositories using the blob = %v, want %v", got, want)
	}
	if ownerCalls.Load() != 1 {
		t.Errorf("owner's upstream fetches = %d, want 1", ownerCalls.Load())
	}
}

// fetchAllFor reads the whole blob d fetched for repo.
func fetchAllFor(t testing.TB, s *Store, repo string, d digest.Digest, fetch fetchFunc) []byte {
	t.Helper()
	rc, _, _, err := s.FetchBlob(context.Background(), repo, d, 0, fetch)
	if err != nil {
		t.Fatalf("FetchBlob for %s: %v", repo, err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read blob for %s: %v", repo, err)
	}
	return got
}

// assertNotLinked checks that FetchBlob refuses the stored d to repo.
func assertNotLinked(t *testing.T, s *Store, repo string, d digest.Digest) {
	t.Helper()
	rc, _, _, err := s.FetchBlob(context.Background(), repo, d, 0, failFetch(t))
	var nl *NotLinkedError
	if !errors.As(err, &nl) || nl.NotHeldBy() != repo {
		if rc != nil {
			rc.Close()
		}
		t.Fatalf("FetchBlob for %s = %v, want a NotLinkedError", repo, err)
	}
}

func TestFlushAccessRecordsLastAccess(t *testing.T) {
	t.Parallel()
	created := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	clk := testclock.New(created)
	s := openStore(t, Options{Now: clk.Now})
	ctx := context.Background()
	data, d := randomBlob(t, 10)
	fetchAll(t, s, d, bytesFetch(data, int64(len(data)), nil))

	read := created.Add(time.Hour)
	clk.Set(read)
	rc, _, err := s.ReadBlob(ctx, d, 0)
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
	row, err := s.blobRow(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	if !row.LastAccess.Equal(created) {
		t.Errorf("last access before flush = %v, want %v (reads are batched)", row.LastAccess, created)
	}

	if err := s.FlushAccess(ctx); err != nil {
		t.Fatal(err)
	}
	row, err = s.blobRow(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	if !row.Created.Equal(created) || !row.LastAccess.Equal(read) || row.Size != int64(len(data)) {
		t.Errorf("row after flush = %+v, want created %v, last access %v, size %d", row, created, read, len(data))
	}
}

func TestCloseStopsDownloadsInFlight(t *testing.T) {
	t.Parallel()
	s, err := Open(context.Background(), Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	data, d := randomBlob(t, 1000)
	var calls atomic.Int32
	fetch, upstream := pipeFetch(t, int64(len(data)), &calls)
	rc, _, _, err := s.FetchBlob(context.Background(), testRepo, d, 0, fetch)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	upstream.Write(data[:10])

	if err := s.Close(); err != nil { // returns once the download has cleaned up
		t.Fatal(err)
	}
	if _, err := io.ReadAll(rc); !errors.Is(err, ErrClosed) {
		t.Errorf("Read after Close: err = %v, want ErrClosed", err)
	}
	if files := dirEntries(t, s.tmpDir); len(files) != 0 {
		t.Errorf("temp dir holds %v after Close", files)
	}
	if _, _, _, err := s.FetchBlob(context.Background(), testRepo, d, 0, failFetch(t)); err == nil {
		t.Error("FetchBlob after Close succeeded")
	}
}

func TestStalledDownloadsFail(t *testing.T) {
	t.Parallel()
	t.Run("body stops", func(t *testing.T) {
		t.Parallel()
		s := openStore(t, Options{StallTimeout: 20 * time.Millisecond})
		_, d := randomBlob(t, 1000)
		var calls atomic.Int32
		fetch, _ := pipeFetch(t, 1000, &calls) // never writes
		rc, _, _, err := s.FetchBlob(context.Background(), testRepo, d, 0, fetch)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		if _, err := io.ReadAll(rc); !errors.Is(err, ErrStalled) {
			t.Errorf("Read: err = %v, want ErrStalled", err)
		}
		assertNotCached(t, s, d)
	})
	t.Run("no response", func(t *testing.T) {
		t.Parallel()
		s := openStore(t, Options{StallTimeout: 20 * time.Millisecond})
		_, d := randomBlob(t, 1000)
		hang := func(ctx context.Context) (io.ReadCloser, int64, error) {
			<-ctx.Done()
			return nil, 0, ctx.Err()
		}
		if _, _, _, err := s.FetchBlob(context.Background(), testRepo, d, 0, whole(hang)); !errors.Is(err, ErrStalled) {
			t.Errorf("FetchBlob: err = %v, want ErrStalled", err)
		}
		assertNotCached(t, s, d)
	})
}
