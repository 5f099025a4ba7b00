//go:build roottests

package cache

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"github.com/opencontainers/go-digest"
)

// smallFilesystem mounts a tmpfs of size as a fresh directory. It needs
// root, which `make test` has (here and in CI): without it the test fails
// rather than skip, so a green run always means the case was exercised.
func smallFilesystem(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test mounts a tmpfs and must run as root (make root-tests)")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// A full disk during a download fails that download cleanly: its readers
// get an error (never a short blob passed off as whole), nothing is indexed
// and the temp file goes. What is cached keeps being served, and caching
// resumes once space is freed.
func TestDiskFullDuringDownload(t *testing.T) {
	dir := smallFilesystem(t, "4m")
	s, err := Open(context.Background(), Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()

	var cached []digest.Digest
	blobs := map[digest.Digest][]byte{}
	var full digest.Digest
	for range 10 { // 10 x 700 KiB into 4 MiB: the disk fills
		data, d := randomBlob(t, 700<<10)
		blobs[d] = data
		got, err := readFetch(ctx, s, d, data)
		if err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("download on a full disk: %v, want ENOSPC", err)
			}
			if len(got) >= len(data) {
				t.Fatalf("a failed download delivered all %d bytes", len(got))
			}
			full = d
			break
		}
		if !bytes.Equal(got, data) {
			t.Fatal("wrong bytes")
		}
		cached = append(cached, d)
	}
	if full == "" {
		t.Fatal("the disk never filled: the test proves nothing")
	}
	assertNotCached(t, s, full)

	for _, d := range cached {
		if got := fetchAll(t, s, d, failFetch(t)); !bytes.Equal(got, blobs[d]) {
			t.Fatalf("cached blob %s not served while the disk is full", d)
		}
	}

	if _, err := s.RemoveBlobs(ctx, cached[:2], nil); err != nil {
		t.Fatal(err)
	}
	if got, err := readFetch(ctx, s, full, blobs[full]); err != nil || !bytes.Equal(got, blobs[full]) {
		t.Fatalf("download after space was freed: %d bytes, %v", len(got), err)
	}
	if got := fetchAll(t, s, full, failFetch(t)); !bytes.Equal(got, blobs[full]) {
		t.Fatal("the blob downloaded after space was freed is not cached")
	}
}

// readFetch fetches d and reads it all, returning what arrived and the
// error that ended it.
func readFetch(ctx context.Context, s *Store, d digest.Digest, data []byte) ([]byte, error) {
	rc, _, _, err := s.FetchBlob(ctx, testRepo, d, 0, bytesFetch(data, int64(len(data)), nil))
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}
