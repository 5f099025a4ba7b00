package cache

import (
	"context"
	"io"
	"testing"

	"github.com/opencontainers/go-digest"
)

// A synthetic cache is a sound one: every blob is indexed, linked to its
// repository, and served with bytes that hash to its digest.
func TestWriteSynthetic(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	const n = 50
	if err := WriteSynthetic(ctx, dir, testRepo, n); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, Options{Dir: dir})
	blobs, err := s.Blobs(ctx)
	if err != nil || len(blobs) != n {
		t.Fatalf("Blobs = %d, %v; want %d", len(blobs), err, n)
	}
	for _, b := range blobs {
		if err := s.requireBlobLink(ctx, testRepo, b.Digest); err != nil {
			t.Fatalf("blob %s not linked to %s: %v", b.Digest, testRepo, err)
		}
		rc, size, err := s.ReadBlob(ctx, b.Digest, 0)
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || int64(len(data)) != size || digest.FromBytes(data) != b.Digest {
			t.Fatalf("blob %s: %d bytes hashing to %s, %v", b.Digest, len(data), digest.FromBytes(data), err)
		}
	}
	reconcile(t, s)
	assertIndexMatchesDisk(t, s)
}
