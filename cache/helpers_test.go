package cache

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/regmirror/regmirror/cache/index"
	"github.com/regmirror/regmirror/internal/fill"
)

const testRepo = "docker.io/library/node"

// openStore opens a Store in a fresh directory and closes it with the test.
func openStore(t testing.TB, opts Options) *Store {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	if opts.Retry.Backoff == 0 {
		opts.Retry.Backoff = time.Millisecond // retries without slowing the tests
	}
	s, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// randomBlob returns n random bytes and their digest.
func randomBlob(t testing.TB, n int) ([]byte, digest.Digest) {
	t.Helper()
	data := make([]byte, n)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	return data, digest.FromBytes(data)
}

// wholeFetch opens a blob download the way an upstream that ignores
// Range requests does: always from the start.
type wholeFetch = func(context.Context) (io.ReadCloser, int64, error)

// whole adapts a wholeFetch to the cache's fetch, which asks for an offset:
// it always answers with the whole blob (start 0).
func whole(f wholeFetch) fetchFunc {
	return func(ctx context.Context, _ int64) (io.ReadCloser, int64, int64, error) {
		body, size, err := f(ctx)
		return body, 0, size, err
	}
}

// bytesFetch serves body with the announced size and counts its calls.
func bytesFetch(body []byte, size int64, calls *atomic.Int32) fetchFunc {
	return whole(func(context.Context) (io.ReadCloser, int64, error) {
		if calls != nil {
			calls.Add(1)
		}
		return io.NopCloser(bytes.NewReader(body)), size, nil
	})
}

// pipeFetch hands out the read end of a pipe the test writes to, so the test
// decides when upstream bytes arrive.
func pipeFetch(t testing.TB, size int64, calls *atomic.Int32) (fetchFunc, *io.PipeWriter) {
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.CloseWithError(errors.New("test over")) })
	return whole(func(context.Context) (io.ReadCloser, int64, error) {
		calls.Add(1)
		return pr, size, nil
	}), pw
}

// failFetch fails the test if the cache asks upstream.
func failFetch(t testing.TB) fetchFunc {
	return whole(func(context.Context) (io.ReadCloser, int64, error) {
		t.Errorf("unexpected upstream fetch")
		return nil, 0, errors.New("unexpected fetch")
	})
}

func fetchAll(t testing.TB, s *Store, d digest.Digest, fetch fetchFunc) []byte {
	t.Helper()
	return fetchAllFor(t, s, testRepo, d, fetch)
}

// readCached reads the whole cached blob d by digest alone, as reads that
// need no repository's link do.
func readCached(t testing.TB, s *Store, d digest.Digest) []byte {
	t.Helper()
	rc, _, err := s.ReadBlob(context.Background(), d, 0)
	if err != nil {
		t.Fatalf("ReadBlob: %v", err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read cached blob: %v", err)
	}
	return got
}

// waitWritten blocks until the download of d has written n bytes.
func waitWritten(t testing.TB, s *Store, d digest.Digest, n int64) {
	t.Helper()
	s.downloads.Lock()
	var dl *download
	s.downloads.EachLocked(func(k fillKey, f *fill.Fill[*download]) {
		if k.d == d {
			dl = f.Value()
		}
	})
	s.downloads.Unlock()
	if dl == nil {
		t.Fatalf("no download of %s in flight", d)
	}
	timeout := time.After(10 * time.Second)
	for {
		dl.mu.Lock()
		written, changed := dl.written, dl.changed
		dl.mu.Unlock()
		if written >= n {
			return
		}
		select {
		case <-changed:
		case <-timeout:
			t.Fatalf("download wrote %d bytes, want %d", written, n)
		}
	}
}

// dirEntries lists the names in dir, recursively.
func dirEntries(t testing.TB, dir string) []string {
	t.Helper()
	var names []string
	err := filepath.WalkDir(dir, func(path string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != dir && !e.IsDir() {
			names = append(names, strings.TrimPrefix(path, dir))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// assertNotCached checks that no trace of d is left: no file, no index row,
// no temp file.
func assertNotCached(t testing.TB, s *Store, d digest.Digest) {
	t.Helper()
	if _, err := os.Stat(blobPath(s.blobRoot, d)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("blob file: err = %v, want not exist", err)
	}
	if _, err := s.blobRow(context.Background(), d); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("index row: err = %v, want not exist", err)
	}
	if names := dirEntries(t, s.tmpDir); len(names) > 0 {
		t.Errorf("temp dir holds %v, want nothing", names)
	}
}

// repositoriesUsing lists the repositories referencing d in the index.
func repositoriesUsing(t testing.TB, s *Store, d digest.Digest) []string {
	t.Helper()
	prefix := prefixUsedBy + string(d) + fieldSep
	var repos []string
	err := s.db.View(context.Background(), func(txn index.Reader) error {
		return txn.ScanKeys(context.Background(), []byte(prefix), func(kv index.Row) error {
			repos = append(repos, strings.TrimPrefix(string(kv.Key), prefix))
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return repos
}

// metricValue reads a counter or gauge.
func metricValue(t testing.TB, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

// reconcile runs the sweep that Run starts in the background.
func reconcile(t testing.TB, s *Store) {
	t.Helper()
	if err := s.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
}
