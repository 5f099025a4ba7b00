package cache

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/internal/testclock"
)

func TestRemoveBlobsSkipsReadersDownloadsAndKeptContent(t *testing.T) {
	t.Parallel()
	s := openStore(t, Options{})
	ctx := context.Background()
	read, dRead := randomBlob(t, 3*copyBufferSize)
	kept, dKept := randomBlob(t, 100)
	idle, dIdle := randomBlob(t, 200)
	for _, b := range []struct {
		data []byte
		d    digest.Digest
	}{{read, dRead}, {kept, dKept}, {idle, dIdle}} {
		fetchAll(t, s, b.d, bytesFetch(b.data, int64(len(b.data)), nil))
	}
	if err := s.Keep(ctx, dKept, "hosted"); err != nil {
		t.Fatal(err)
	}
	// A download in flight.
	_, dLoading := randomBlob(t, 50)
	var calls atomic.Int32
	fetch, upstream := pipeFetch(t, 50, &calls)
	loading, _, _, err := s.FetchBlob(ctx, testRepo, dLoading, 0, fetch)
	if err != nil {
		t.Fatal(err)
	}
	defer loading.Close()
	defer upstream.Close()

	reader, _, err := s.ReadBlob(ctx, dRead, 0)
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, 10)
	if _, err := io.ReadFull(reader, first); err != nil {
		t.Fatal(err)
	}
	// The download counts its 50 bytes once its fill has the upstream's
	// answer, which happens beside this goroutine.
	settled := int64(len(read) + len(kept) + len(idle) + 50)
	for deadline := time.Now().Add(10 * time.Second); s.Usage() != settled; {
		if time.Now().After(deadline) {
			t.Fatalf("Usage = %d, never the %d of the blobs and the download", s.Usage(), settled)
		}
		time.Sleep(time.Millisecond)
	}
	usage := s.Usage()

	r, err := s.RemoveBlobs(ctx, []digest.Digest{dRead, dKept, dIdle, dLoading}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.Removed, []digest.Digest{dIdle}) || r.Freed != int64(len(idle)) {
		t.Errorf("removed %v freeing %d, want only the idle blob (%d bytes)", r.Removed, r.Freed, len(idle))
	}
	if !slices.Equal(r.InUse, []digest.Digest{dRead, dLoading}) || !slices.Equal(r.Kept, []digest.Digest{dKept}) {
		t.Errorf("in use %v, kept %v", r.InUse, r.Kept)
	}
	if got := s.Usage(); got != usage-int64(len(idle)) {
		t.Errorf("Usage = %d after removal, want %d", got, usage-int64(len(idle)))
	}
	if _, err := os.Stat(blobPath(s.blobRoot, dIdle)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("file of the removed blob: %v", err)
	}
	rest, err := io.ReadAll(reader)
	if err != nil || !bytes.Equal(append(first, rest...), read) {
		t.Errorf("reader during removal: err %v, bytes match %v", err, bytes.Equal(append(first, rest...), read))
	}
	reader.Close()

	// Once closed, the reader no longer protects its blob.
	if r, err := s.RemoveBlobs(ctx, []digest.Digest{dRead}, nil); err != nil || len(r.Removed) != 1 {
		t.Errorf("RemoveBlobs after the reader closed: %+v, %v", r, err)
	}
	if _, _, err := s.ReadBlob(ctx, dRead, 0); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadBlob of a removed blob: %v, want fs.ErrNotExist", err)
	}
	if got := fetchAll(t, s, dIdle, bytesFetch(idle, int64(len(idle)), nil)); !bytes.Equal(got, idle) {
		t.Error("a removed blob is not fetched again")
	}
}

func TestUsageCountsDownloadsAndSignalsGrowth(t *testing.T) {
	t.Parallel()
	s := openStore(t, Options{})
	ctx := context.Background()
	drain := func() bool {
		select {
		case <-s.Grew():
			return true
		default:
			return false
		}
	}
	drain()
	data, d := randomBlob(t, 1000)
	var calls atomic.Int32
	fetch, upstream := pipeFetch(t, int64(len(data)), &calls)
	rc, _, _, err := s.FetchBlob(ctx, testRepo, d, 0, fetch)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if !drain() || s.Usage() != 1000 {
		t.Errorf("download started: signalled %v, Usage %d; want a signal and 1000", !drain(), s.Usage())
	}
	upstream.Write(data)
	upstream.Close()
	if _, err := io.ReadAll(rc); err != nil {
		t.Fatal(err)
	}
	s.fills.Wait()
	if !drain() || s.Usage() != 1000 {
		t.Errorf("download committed: Usage %d, want 1000 and a signal", s.Usage())
	}
}

func TestReconcileRepairsIndexAndFiles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	lost, dLost := randomBlob(t, 100)
	sound, _ := randomBlob(t, 200)
	for _, b := range [][]byte{lost, sound} {
		fetchAll(t, s, digest.FromBytes(b), bytesFetch(b, int64(len(b)), nil))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// A crash between rename and commit leaves a verified file with no row;
	// a stray file that does not hash to its name is garbage.
	orphan, dOrphan := randomBlob(t, 300)
	writeBlobFile(t, dir, dOrphan, orphan)
	_, dGarbage := randomBlob(t, 10)
	writeBlobFile(t, dir, dGarbage, []byte("not what the name says"))
	if err := os.Remove(blobPath(dir+"/blobs", dLost)); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, Options{Dir: dir})
	// Open looks at no file: the sweep is Run's, in the background. Until
	// it has run, the orphan is not served: its bytes are not verified.
	if _, err := s.blobRow(ctx, dLost); err != nil {
		t.Errorf("Open swept the row of a missing file: %v", err)
	}
	if _, _, err := s.ReadBlob(ctx, dOrphan, 0); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadBlob of an unverified orphan before the sweep: %v, want fs.ErrNotExist", err)
	}
	if err := s.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.blobRow(ctx, dLost); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("row of a missing file survived: %v", err)
	}
	if _, err := os.Stat(blobPath(s.blobRoot, dGarbage)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("garbage file survived: %v", err)
	}
	for _, b := range [][]byte{sound, orphan} {
		if got := readCached(t, s, digest.FromBytes(b)); !bytes.Equal(got, b) {
			t.Errorf("blob %s not served from the cache", digest.FromBytes(b))
		}
	}
	if want := int64(len(sound) + len(orphan)); s.Usage() != want {
		t.Errorf("Usage = %d, want %d", s.Usage(), want)
	}
}

func writeBlobFile(t *testing.T, dir string, d digest.Digest, data []byte) {
	t.Helper()
	path := blobPath(dir+"/blobs", d)
	if err := os.MkdirAll(path[:len(path)-len(d.Encoded())-1], 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyRemovesCorruptBlobs(t *testing.T) {
	t.Parallel()
	s := openStore(t, Options{})
	ctx := context.Background()
	good, dGood := randomBlob(t, 1000)
	bad, dBad := randomBlob(t, 1000)
	for _, b := range [][]byte{good, bad} {
		fetchAll(t, s, digest.FromBytes(b), bytesFetch(b, int64(len(b)), nil))
	}
	// Bit rot: same size, other bytes.
	if err := os.WriteFile(blobPath(s.blobRoot, dBad), bytes.Repeat([]byte{'x'}, len(bad)), 0o644); err != nil {
		t.Fatal(err)
	}
	var progressed int
	v, err := s.Verify(ctx, VerifyOptions{Progress: func(done, total int, _ int64) { progressed = done }})
	if err != nil {
		t.Fatal(err)
	}
	if v.Checked != 2 || v.Bytes != 2000 || progressed != 2 {
		t.Errorf("checked %d blobs, %d bytes, progress %d; want 2, 2000, 2", v.Checked, v.Bytes, progressed)
	}
	if len(v.Corrupt) != 1 || v.Corrupt[0].Digest != dBad || !slices.Equal(v.Removal.Removed, []digest.Digest{dBad}) {
		t.Errorf("corrupt %+v, removed %v; want only %s", v.Corrupt, v.Removal.Removed, dBad)
	}
	assertNotCached(t, s, dBad)
	if got := fetchAll(t, s, dGood, failFetch(t)); !bytes.Equal(got, good) {
		t.Error("the sound blob is gone")
	}
	if v, err := s.Verify(ctx, VerifyOptions{Sample: 1}); err != nil || v.Checked != 1 || len(v.Corrupt) != 0 {
		t.Errorf("Verify(sample 1) = %+v, %v", v, err)
	}
}

func TestInventoryAndRemoveManifests(t *testing.T) {
	t.Parallel()
	created := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	clk := testclock.New(created)
	dir := t.TempDir()
	ctx := context.Background()
	s, err := Open(ctx, Options{Dir: dir, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	layer, dLayer := randomBlob(t, 500)
	fetchAll(t, s, dLayer, bytesFetch(layer, int64(len(layer)), nil))
	cfg := digest.FromString("config")
	manifest := []byte(`{"schemaVersion":2,"config":{"digest":"` + cfg + `"},"layers":[{"digest":"` + dLayer + `"}]}`)
	dManifest, err := s.PutManifest(ctx, testRepo, ociManifest, manifest)
	if err != nil {
		t.Fatal(err)
	}
	index := []byte(`{"schemaVersion":2,"manifests":[{"digest":"` + dManifest + `"}]}`)
	dIndex, err := s.PutManifest(ctx, testRepo, "application/vnd.oci.image.index.v1+json", index)
	if err != nil {
		t.Fatal(err)
	}
	for _, tag := range []string{"1", "latest"} {
		if err := s.PutTag(ctx, testRepo, tag, dIndex, created); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutTag(ctx, testRepo, "other", dManifest, created); err != nil {
		t.Fatal(err)
	}
	read := created.Add(time.Hour)
	clk.Set(read)
	if _, _, err := s.Manifest(ctx, dManifest); err != nil {
		t.Fatal(err)
	}
	// Access times survive a restart once flushed (Close flushes).
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, Options{Dir: dir, Now: clk.Now})

	inv, err := s.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Blobs) != 1 || inv.Blobs[0].Digest != dLayer || !slices.Equal(inv.Blobs[0].Repos, []string{testRepo}) {
		t.Errorf("blobs = %+v", inv.Blobs)
	}
	byDigest := map[digest.Digest]ManifestInfo{}
	for _, m := range inv.Manifests {
		byDigest[m.Digest] = m
	}
	m, ix := byDigest[dManifest], byDigest[dIndex]
	if !slices.Equal(m.Blobs, []digest.Digest{cfg, dLayer}) || !m.LastAccess.Equal(read) || !slices.Equal(m.Repos, []string{testRepo}) {
		t.Errorf("manifest = %+v; want blobs [config layer], last access %v", m, read)
	}
	if !slices.Equal(ix.Manifests, []digest.Digest{dManifest}) || !ix.LastAccess.Equal(created) {
		t.Errorf("index = %+v; want one child, last access %v", ix, created)
	}
	if len(inv.Tags) != 3 {
		t.Errorf("tags = %+v, want 3", inv.Tags)
	}

	if err := s.Keep(ctx, dManifest, "hosted"); err != nil {
		t.Fatal(err)
	}
	r, err := s.RemoveManifests(ctx, []digest.Digest{dIndex, dManifest}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.Removed, []digest.Digest{dIndex}) || !slices.Equal(r.Kept, []digest.Digest{dManifest}) || r.Tags != 2 {
		t.Errorf("RemoveManifests = %+v; want the index and its two tags removed, the kept manifest skipped", r)
	}
	if _, _, err := s.Manifest(ctx, dIndex); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("removed manifest: %v", err)
	}
	if _, _, err := s.Tag(ctx, testRepo, "latest"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("tag of a removed manifest: %v", err)
	}
	if d, _, err := s.Tag(ctx, testRepo, "other"); err != nil || d != dManifest {
		t.Errorf("tag of the kept manifest: %s, %v", d, err)
	}
	if got := fetchAll(t, s, dLayer, failFetch(t)); !bytes.Equal(got, layer) {
		t.Error("removing manifests took their blob")
	}
}
