package cache

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/regmirror/regmirror/internal/testfiles"
)

// crashBlob is the blob the crash tests download: the same bytes in the
// parent test and in the child process it kills.
func crashBlob() ([]byte, digest.Digest) {
	data := make([]byte, 1<<20)
	rng := rand.NewChaCha8([32]byte{'c', 'r', 'a', 's', 'h'})
	rng.Read(data)
	return data, digest.FromBytes(data)
}

// Environment of the child process of TestCrashRecovery.
const (
	envCrashDir  = "REGMIRROR_TEST_CRASH_DIR"
	envCrashStep = "REGMIRROR_TEST_CRASH_STEP"
)

// stepMidDownload kills the child halfway through the upstream body.
const stepMidDownload = "mid-download"

// A process killed with SIGKILL at any step of a download, of the commit
// sequence or of a removal leaves a data directory that Open repairs: the
// temp directory is swept, no index row lacks its file, a complete file
// without a row is re-hashed and adopted, and every read afterwards is
// correct, served from the cache or downloaded again.
func TestCrashRecovery(t *testing.T) {
	t.Parallel()
	data, d := crashBlob()
	tests := []struct {
		step string
		// cachedAfter: the blob survives the crash (its file was in place).
		cachedAfter bool
		// removal: the child removes a cached blob instead of downloading it.
		removal bool
	}{
		{step: stepMidDownload},
		{step: stepSynced},
		{step: stepRenamed, cachedAfter: true},
		{step: stepCommitted, cachedAfter: true},
		{step: stepRowsDeleted, cachedAfter: true, removal: true},
	}
	for _, tt := range tests {
		t.Run(tt.step, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if tt.removal {
				s, err := Open(context.Background(), Options{Dir: dir})
				if err != nil {
					t.Fatal(err)
				}
				fetchAll(t, s, d, bytesFetch(data, int64(len(data)), nil))
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
			}
			runCrashChild(t, dir, tt.step)

			reg := prometheus.NewRegistry()
			s := openStore(t, Options{Dir: dir, Registerer: reg})
			reconcile(t, s)
			if names := dirEntries(t, s.tmpDir); len(names) != 0 {
				t.Fatalf("temp dir after restart: %v, want empty", names)
			}
			assertIndexMatchesDisk(t, s)
			// A file adopted without its row has lost its links: it is read
			// by digest here, and the mirror confirms it before serving it
			// under a repository again.
			read := func() []byte { return fetchAll(t, s, d, bytesFetch(data, int64(len(data)), nil)) }
			if tt.cachedAfter {
				read = func() []byte { return readCached(t, s, d) }
			}
			if got := read(); !bytes.Equal(got, data) {
				t.Fatal("wrong bytes after the restart")
			}
			assertIndexMatchesDisk(t, s)
		})
	}
}

// runCrashChild runs TestCrashChild in a new process on dir and expects it
// to die of SIGKILL at step.
func runCrashChild(t *testing.T, dir, step string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), envCrashDir+"="+dir, envCrashStep+"="+step)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("the child did not crash at %s: %v\n%s", step, err, out)
	}
	if ws, ok := exit.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the child ended with %v at %s, want SIGKILL\n%s", err, step, out)
	}
}

// TestCrashChild is the process TestCrashRecovery kills. Run on its own, it
// does nothing.
func TestCrashChild(t *testing.T) {
	dir, step := os.Getenv(envCrashDir), os.Getenv(envCrashStep)
	if dir == "" {
		return
	}
	kill := func() { syscall.Kill(os.Getpid(), syscall.SIGKILL) }
	crashPoint = func(at string) {
		if at == step {
			kill()
		}
	}
	s, err := Open(context.Background(), Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	data, d := crashBlob()
	if step == stepRowsDeleted {
		if _, err := s.RemoveBlobs(context.Background(), []digest.Digest{d}, nil); err != nil {
			t.Fatal(err)
		}
		t.Fatal("removal completed without reaching its crash point")
	}
	fetch := bytesFetch(data, int64(len(data)), nil)
	if step == stepMidDownload {
		fetch = whole(func(context.Context) (io.ReadCloser, int64, error) {
			body := io.MultiReader(bytes.NewReader(data[:len(data)/2]), readFunc(func([]byte) (int, error) {
				kill()
				select {}
			}))
			return io.NopCloser(body), int64(len(data)), nil
		})
	}
	rc, _, _, err := s.FetchBlob(context.Background(), testRepo, d, 0, fetch)
	if err == nil {
		io.Copy(io.Discard, rc)
	}
	t.Fatalf("download completed without reaching crash point %s: %v", step, err)
}

type readFunc func([]byte) (int, error)

func (f readFunc) Read(p []byte) (int, error) { return f(p) }

// assertIndexMatchesDisk checks that every indexed blob has a file of its
// size and every blob file an index row.
func assertIndexMatchesDisk(t *testing.T, s *Store) {
	t.Helper()
	blobs, err := s.Blobs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	indexed := map[string]bool{}
	for _, b := range blobs {
		indexed[blobPath(s.blobRoot, b.Digest)] = true
		fi, err := os.Stat(blobPath(s.blobRoot, b.Digest))
		if err != nil || fi.Size() != b.Size {
			t.Fatalf("index row of %s (%d bytes) without a sound file: %v", b.Digest, b.Size, err)
		}
	}
	for _, name := range dirEntries(t, s.blobRoot) {
		if !indexed[filepath.Join(s.blobRoot, name)] {
			t.Fatalf("blob file %s has no index row", name)
		}
	}
}

// A blob file that changed on disk since it was indexed (a flipped bit,
// same size) is found out on its first read after Open: it is dropped,
// counted, never served, and the next fetch downloads it again.
func TestBitFlippedFileIsNeverServed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	data, d := randomBlob(t, 3*copyBufferSize+7)
	s, err := Open(ctx, Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	fetchAll(t, s, d, bytesFetch(data, int64(len(data)), nil))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	flipByte(t, blobPath(filepath.Join(dir, "blobs"), d), int64(len(data)/2))

	reg := prometheus.NewRegistry()
	s = openStore(t, Options{Dir: dir, Registerer: reg})
	// Concurrent first readers share one verdict, and none gets the file.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if rc, _, err := s.ReadBlob(ctx, d, 0); !errors.Is(err, fs.ErrNotExist) {
				if rc != nil {
					rc.Close()
				}
				t.Errorf("ReadBlob of a bit-flipped file: err = %v, want not exist", err)
			}
		})
	}
	wg.Wait()
	assertNotCached(t, s, d)
	if got := metricValue(t, s.metrics.corruptFiles); got != 1 {
		t.Fatalf("corrupt files counted = %v, want 1", got)
	}
	var calls atomic.Int32
	if got := fetchAll(t, s, d, bytesFetch(data, int64(len(data)), &calls)); !bytes.Equal(got, data) || calls.Load() != 1 {
		t.Fatalf("after the repair: %d fetches, bytes equal %v; want 1 and true", calls.Load(), bytes.Equal(got, data))
	}
	if got := fetchAll(t, s, d, failFetch(t)); !bytes.Equal(got, data) {
		t.Fatal("the repaired blob is not served from the cache")
	}
}

func flipByte(t *testing.T, path string, at int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, at); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x01
	if _, err := f.WriteAt(b, at); err != nil {
		t.Fatal(err)
	}
}

// A blob larger than the cache may keep is downloaded once for all its
// concurrent readers and served to them, but never counted against the
// budget, never indexed, and its temp file goes: the cache is not flushed
// for it.
func TestBlobLargerThanLimitPassesThrough(t *testing.T) {
	t.Parallel()
	for _, announced := range []bool{true, false} {
		name := map[bool]string{true: "size announced", false: "size unknown"}[announced]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := openStore(t, Options{Limits: Limits{MaxKeptSize: 2 * copyBufferSize}})
			data, d := randomBlob(t, 5*copyBufferSize)
			size := int64(len(data))
			if !announced {
				size = -1
			}
			var calls atomic.Int32
			fetch, pw := pipeFetch(t, size, &calls)
			const readers = 3
			bodies := make([][]byte, readers)
			var wg sync.WaitGroup
			for i := range readers {
				rc, _, _, err := s.FetchBlob(context.Background(), testRepo, d, 0, fetch)
				if err != nil {
					t.Fatal(err)
				}
				wg.Go(func() {
					defer rc.Close()
					var err error
					if bodies[i], err = io.ReadAll(rc); err != nil {
						t.Errorf("reader %d: %v", i, err)
					}
				})
			}
			if _, err := pw.Write(data[:len(data)/2]); err != nil {
				t.Fatal(err)
			}
			waitWritten(t, s, d, int64(len(data)/2))
			if s.Usage() != 0 {
				t.Fatalf("Usage = %d while an oversized blob streams, want 0", s.Usage())
			}
			if _, err := pw.Write(data[len(data)/2:]); err != nil {
				t.Fatal(err)
			}
			pw.Close()
			wg.Wait()
			for i, b := range bodies {
				if !bytes.Equal(b, data) {
					t.Fatalf("reader %d got %d bytes, want the blob's %d", i, len(b), len(data))
				}
			}
			if calls.Load() != 1 {
				t.Fatalf("%d fetches for concurrent readers, want 1", calls.Load())
			}
			assertNotCached(t, s, d)
			if got := metricValue(t, s.metrics.passedThrough); got != 1 {
				t.Fatalf("passed through = %v, want 1", got)
			}
			if s.Usage() != 0 {
				t.Fatalf("Usage = %d after, want 0", s.Usage())
			}
		})
	}
}

// bigManifest is larger than the index keeps in its tables: it goes to the value log.
var bigManifest = bytes.Repeat([]byte(" "), 16<<10)

// fillIndex caches blobs, a manifest large enough for the value log and a
// tag, closes the store, and returns the blobs.
func fillIndex(t *testing.T, dir string) map[digest.Digest][]byte {
	t.Helper()
	ctx := context.Background()
	s, err := Open(ctx, Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	blobs := map[digest.Digest][]byte{}
	for i := range 50 {
		data, d := randomBlob(t, 1000+i)
		fetchAll(t, s, d, bytesFetch(data, int64(len(data)), nil))
		blobs[d] = data
	}
	md, err := s.PutManifest(ctx, testRepo, "application/vnd.oci.image.manifest.v1+json", bigManifest)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutTag(ctx, testRepo, "latest", md, s.now()); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return blobs
}

// A lost index is rebuilt from the blob files, each re-hashed before it is
// indexed again; manifests and tags, which live only in the index, are gone
// and would be fetched again.
func TestLostIndexRebuiltFromBlobFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	blobs := fillIndex(t, dir)
	if err := os.RemoveAll(filepath.Join(dir, "index")); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, Options{Dir: dir})
	reconcile(t, s)
	for d, data := range blobs {
		if got := readCached(t, s, d); !bytes.Equal(got, data) {
			t.Fatalf("blob %s: wrong bytes from the rebuilt index", d)
		}
	}
	st, err := s.Stats(context.Background())
	if err != nil || st.Blobs != int64(len(blobs)) || st.Manifests != 0 || st.Tags != 0 {
		t.Fatalf("rebuilt index: %+v, %v; want %d blobs and nothing else", st, err, len(blobs))
	}
}

// A torn or corrupt index makes Open fail with an error that says what to
// do, never a panic and never a half-read index.
func TestDamagedIndexRefusesToOpen(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, suffix string
		damage       func(path string, size int64) error
		mayOpen      bool
	}{
		{"torn table", ".sst", func(path string, _ int64) error { return os.Truncate(path, 100) }, false},
		{"table with a flipped region", ".sst", func(path string, size int64) error { return testfiles.Scribble(path, size/3) }, false},
		{"missing table", ".sst", func(path string, _ int64) error { return os.Remove(path) }, false},
		{"corrupt value log", ".vlog", func(path string, size int64) error { return testfiles.Scribble(path, size/3) }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			fillIndex(t, dir)
			path, size := testfiles.Largest(t, filepath.Join(dir, "index"), tt.suffix)
			if err := tt.damage(path, size); err != nil {
				t.Fatal(err)
			}
			s, err := Open(context.Background(), Options{Dir: dir})
			if err == nil && tt.mayOpen {
				// Badger reads the value log lazily: the damaged value
				// must then fail to read, never come back as other bytes.
				_, data, err := s.Manifest(context.Background(), digest.FromBytes(bigManifest))
				s.Close()
				if err == nil && !bytes.Equal(data, bigManifest) {
					t.Fatal("a damaged manifest was read back as other bytes")
				}
				return
			}
			if err == nil {
				s.Close()
				t.Fatal("Open of a damaged index succeeded")
			}
			if !strings.Contains(err.Error(), "move "+filepath.Join(dir, "index")+" aside") {
				t.Fatalf("Open error %q does not say how to recover", err)
			}
			// Following the advice works.
			if err := os.Rename(filepath.Join(dir, "index"), filepath.Join(dir, "index.damaged")); err != nil {
				t.Fatal(err)
			}
			s = openStore(t, Options{Dir: dir})
			reconcile(t, s)
			assertIndexMatchesDisk(t, s)
		})
	}
}
