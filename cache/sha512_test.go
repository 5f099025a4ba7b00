package cache

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
)

// randomBlob512 returns n random bytes and their sha512 digest.
func randomBlob512(t testing.TB, n int) ([]byte, digest.Digest) {
	t.Helper()
	data := make([]byte, n)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	return data, digest.SHA512.FromBytes(data)
}

// A sha512 blob is downloaded, verified with sha512 and filed under
// blobs/sha512; bytes that do not hash to it are refused and leave nothing.
func TestSHA512BlobFill(t *testing.T) {
	t.Parallel()
	s := openStore(t, Options{})
	data, d := randomBlob512(t, 3*copyBufferSize+11)

	other, _ := randomBlob512(t, len(data))
	rc, _, _, err := s.FetchBlob(context.Background(), testRepo, d, 0, bytesFetch(other, int64(len(other)), nil))
	if err == nil {
		_, err = io.ReadAll(rc)
		rc.Close()
	}
	if !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("other bytes for a sha512 digest: %v, want ErrDigestMismatch", err)
	}
	assertNotCached(t, s, d)

	if got := fetchAll(t, s, d, bytesFetch(data, int64(len(data)), nil)); !bytes.Equal(got, data) {
		t.Fatal("the sha512 blob came back with other bytes")
	}
	if got := readCached(t, s, d); !bytes.Equal(got, data) {
		t.Fatal("the cached sha512 blob has other bytes")
	}
	want := filepath.Join(s.blobRoot, "sha512", d.Encoded()[:2], d.Encoded())
	if blobPath(s.blobRoot, d) != want {
		t.Fatalf("blob path %s, want %s", blobPath(s.blobRoot, d), want)
	}
	if fi, err := os.Stat(want); err != nil || fi.Size() != int64(len(data)) {
		t.Fatalf("blob file %s: %v", want, err)
	}
}

// A sha512 blob file that rotted while the daemon was down is hashed with
// sha512 on its first read, dropped and never served; one that did not
// rot is served.
func TestSHA512BitFlippedFileIsNeverServed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	good, dGood := randomBlob512(t, copyBufferSize+5)
	bad, dBad := randomBlob512(t, copyBufferSize+5)
	s, err := Open(ctx, Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	fetchAll(t, s, dGood, bytesFetch(good, int64(len(good)), nil))
	fetchAll(t, s, dBad, bytesFetch(bad, int64(len(bad)), nil))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	flipByte(t, blobPath(filepath.Join(dir, "blobs"), dBad), int64(len(bad)/2))

	s = openStore(t, Options{Dir: dir})
	if rc, _, err := s.ReadBlob(ctx, dBad, 0); !errors.Is(err, fs.ErrNotExist) {
		if rc != nil {
			rc.Close()
		}
		t.Fatalf("ReadBlob of a bit-flipped sha512 file: err = %v, want not exist", err)
	}
	assertNotCached(t, s, dBad)
	if got := readCached(t, s, dGood); !bytes.Equal(got, good) {
		t.Fatal("the sound sha512 blob has other bytes")
	}
	if v, err := s.Verify(ctx, VerifyOptions{}); err != nil || v.Checked != 1 || len(v.Corrupt) != 0 {
		t.Fatalf("Verify after the repair = %+v, %v; want one sound blob", v, err)
	}
}

// Verify re-hashes sha512 blobs with sha512: sound ones pass, rotten ones
// go.
func TestSHA512Verify(t *testing.T) {
	t.Parallel()
	s := openStore(t, Options{})
	good, dGood := randomBlob512(t, 1000)
	bad, dBad := randomBlob512(t, 1000)
	fetchAll(t, s, dGood, bytesFetch(good, int64(len(good)), nil))
	fetchAll(t, s, dBad, bytesFetch(bad, int64(len(bad)), nil))
	if err := os.WriteFile(blobPath(s.blobRoot, dBad), bytes.Repeat([]byte{'x'}, len(bad)), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := s.Verify(context.Background(), VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v.Checked != 2 || len(v.Corrupt) != 1 || v.Corrupt[0].Digest != dBad {
		t.Fatalf("Verify = %+v, want 2 checked and only %s corrupt", v, dBad)
	}
	assertNotCached(t, s, dBad)
	if got := readCached(t, s, dGood); !bytes.Equal(got, good) {
		t.Fatal("the sound sha512 blob is gone")
	}
}

// Files in blobs/sha512 that the index lost (a crash between rename and
// commit) are re-hashed with sha512 by the reconcile: adopted when they hash to
// their name, removed otherwise. The sha256 tree is reconciled beside it.
func TestSHA512OrphanFilesReconciled(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	blobRoot := filepath.Join(dir, "blobs")
	sound, dSound := randomBlob512(t, 700)
	rotten, dRotten := randomBlob512(t, 700)
	sound256, dSound256 := randomBlob(t, 700)
	s := openStore(t, Options{Dir: dir})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	rotten[0] ^= 1
	for d, data := range map[digest.Digest][]byte{dSound: sound, dRotten: rotten, dSound256: sound256} {
		path := blobPath(blobRoot, d)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	s = openStore(t, Options{Dir: dir})
	reconcile(t, s)
	if got := readCached(t, s, dSound); !bytes.Equal(got, sound) {
		t.Fatal("the adopted sha512 file has other bytes")
	}
	if got := readCached(t, s, dSound256); !bytes.Equal(got, sound256) {
		t.Fatal("the adopted sha256 file has other bytes")
	}
	assertNotCached(t, s, dRotten)
	if _, err := os.Stat(blobPath(blobRoot, dRotten)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the sha512 file that does not hash to its name is still there: %v", err)
	}
}

// A manifest fetched by its sha512 digest is stored under it; bytes that do
// not hash to the digest are refused.
func TestPutManifestAsSHA512(t *testing.T) {
	t.Parallel()
	s := openStore(t, Options{})
	ctx := context.Background()
	data := []byte(`{"schemaVersion":2}`)
	d := digest.SHA512.FromBytes(data)
	if err := s.PutManifestAs(ctx, testRepo, d, ociManifest, []byte(`{"schemaVersion":3}`)); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("other bytes under a sha512 digest: %v, want ErrDigestMismatch", err)
	}
	if err := s.PutManifestAs(ctx, testRepo, d, ociManifest, data); err != nil {
		t.Fatal(err)
	}
	mediaType, got, err := s.Manifest(ctx, d)
	if err != nil || mediaType != ociManifest || !bytes.Equal(got, data) {
		t.Fatalf("Manifest(%s) = %q, %q, %v", d, mediaType, got, err)
	}
	if _, _, err := s.Manifest(ctx, digest.SHA256.FromBytes(data)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the sha256 of a manifest stored by sha512: %v, want not exist", err)
	}
}
