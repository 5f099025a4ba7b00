package cache

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// Run sweeps the cache in the background: a row whose file was deleted
// while the daemon was down goes without anyone reading it.
func TestRunReconcilesInBackground(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	data, d := randomBlob(t, 100)
	fetchAll(t, s, d, bytesFetch(data, int64(len(data)), nil))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(blobPath(dir+"/blobs", d)); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, Options{Dir: dir})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := s.blobRow(ctx, d)
		if errors.Is(err, fs.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the row of a missing file is still indexed: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if s.Usage() != 0 {
		t.Fatalf("Usage = %d after the only blob's row was dropped, want 0", s.Usage())
	}
}

// The sweep runs beside reads and downloads: every reader gets the right
// bytes (from the cache, or downloaded again when its file was lost), and
// index and files agree in the end.
func TestReconcileBesideReadsAndDownloads(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	const n = 40
	blobs := map[digest.Digest][]byte{}
	for range n {
		data, d := randomBlob(t, 1000)
		blobs[d] = data
		fetchAll(t, s, d, bytesFetch(data, int64(len(data)), nil))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Lose every other file, truncate some, and leave orphans without rows.
	i := 0
	for d := range blobs {
		switch i % 4 {
		case 0:
			os.Remove(blobPath(dir+"/blobs", d))
		case 1:
			os.Truncate(blobPath(dir+"/blobs", d), 10)
		}
		i++
	}
	orphans := map[digest.Digest][]byte{}
	for range n / 4 {
		data, d := randomBlob(t, 500)
		orphans[d] = data
		writeBlobFile(t, dir, d, data)
	}

	s = openStore(t, Options{Dir: dir})
	var wg sync.WaitGroup
	wg.Go(func() { reconcile(t, s) })
	for d, data := range blobs {
		wg.Go(func() {
			got := fetchAll(t, s, d, bytesFetch(data, int64(len(data)), nil))
			if !bytes.Equal(got, data) {
				t.Errorf("blob %s: wrong bytes beside the sweep", d)
			}
		})
	}
	// An orphan has no link to a repository: it is read by digest, and is
	// either not served yet or served right.
	for d, data := range orphans {
		wg.Go(func() {
			rc, _, err := s.ReadBlob(ctx, d, 0)
			if errors.Is(err, fs.ErrNotExist) {
				return
			}
			if err != nil {
				t.Errorf("ReadBlob of an orphan: %v", err)
				return
			}
			defer rc.Close()
			if got, err := io.ReadAll(rc); err != nil || !bytes.Equal(got, data) {
				t.Errorf("orphan %s: wrong bytes beside the sweep (%v)", d, err)
			}
		})
	}
	wg.Wait()
	reconcile(t, s) // a second sweep finds nothing to repair...
	assertIndexMatchesDisk(t, s)
	var want int64
	for _, data := range blobs {
		want += int64(len(data))
	}
	for _, data := range orphans {
		want += int64(len(data))
	}
	if got := s.Usage(); got != want { // ...and the usage counts each blob once
		t.Fatalf("Usage = %d, want %d", got, want)
	}
}

// A row the sweep found unsound is dropped only if it still is when the
// sweep comes to drop it: a download may have put the blob back meanwhile.
func TestSweepKeepsBlobRestoredMeanwhile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t, Options{})
	data, d := randomBlob(t, 100)
	fetchAll(t, s, d, bytesFetch(data, int64(len(data)), nil))
	row, err := s.blobRow(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	older := row
	older.Created = row.Created.Add(-time.Hour)
	for _, seen := range []blobRow{row, older} {
		if n, err := s.dropUnsound(ctx, []unsound{{d: d, row: seen}}); err != nil || n != 0 {
			t.Fatalf("dropUnsound of a restored blob dropped %d rows, %v", n, err)
		}
	}
	if got := readCached(t, s, d); !bytes.Equal(got, data) {
		t.Fatal("the restored blob is not served")
	}
	if err := os.Remove(blobPath(s.blobRoot, d)); err != nil {
		t.Fatal(err)
	}
	if n, err := s.dropUnsound(ctx, []unsound{{d: d, row: row}}); err != nil || n != 1 {
		t.Fatalf("dropUnsound of a row without its file dropped %d rows, %v", n, err)
	}
}

// An upload publishing d holds it in the use table across its rename and
// commit: the sweep must not remove the unindexed file of d meanwhile,
// or the upload's sound file goes with the corrupt orphan it replaced.
func TestSweepLeavesAFilePublishedByAnUpload(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t, Options{})
	h := openHosted(t, s)
	data, d := randomBlob(t, 700)
	writeBlobFile(t, s.dataDir, d, data) // renamed in, not yet indexed
	release, err := h.pin(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.removeOrphan(ctx, d, blobPath(s.blobRoot, d))
	release()
	if err != nil {
		t.Fatal(err)
	}
	if got != orphanKept {
		t.Fatal("the sweep removed a file that an upload was publishing")
	}
	if _, err := os.Stat(blobPath(s.blobRoot, d)); err != nil {
		t.Fatalf("the published file is gone: %v", err)
	}
}

// Uploads of digests whose corrupt orphans the sweep is removing all end
// indexed, with their files, byte for byte.
func TestUploadsBesideTheSweepOfTheirOrphans(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	const n = 40
	blobs := map[digest.Digest][]byte{}
	for range n {
		data, d := randomBlob(t, 900)
		blobs[d] = data
		writeBlobFile(t, dir, d, []byte("not the blob")) // a corrupt orphan
	}
	s := openStore(t, Options{Dir: dir})
	h := openHosted(t, s)
	var wg sync.WaitGroup
	wg.Go(func() { reconcile(t, s) })
	for _, data := range blobs {
		wg.Go(func() { pushBlob(t, h, "team/app", data) })
	}
	wg.Wait()
	for d, data := range blobs {
		rc, _, err := h.OpenBlob(ctx, "team/app", d, 0)
		if err != nil {
			t.Fatalf("pushed blob %s: %v", d, err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("pushed blob %s read back wrong: %v", d, err)
		}
	}
}

// The sweep counts the stray files it removes from the blob tree (names
// that are no digest, or digests in the wrong place) with the files it
// removed for not hashing to their name, in what it reports.
func TestSweepCountsStrayFilesItRemoves(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t, Options{})
	strays := []string{
		filepath.Join(s.blobRoot, "sha256", "ab", "not-a-digest"),
		filepath.Join(s.blobRoot, "sha512", "leftover.tmp"),
	}
	for _, p := range strays {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("stray"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	adopted, removed, err := s.adoptOrphanFiles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if adopted != 0 || removed != len(strays) {
		t.Fatalf("sweep adopted %d and removed %d files, want 0 and %d", adopted, removed, len(strays))
	}
	for _, p := range strays {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("stray %s: %v, want it removed", p, err)
		}
	}
}
