package cache

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/regmirror/regmirror/internal/bloblookup"
)

// The method set of mirror.Cache, copied because cache must not import
// mirror: a change on either side breaks this assertion or the mirror's.
var _ interface {
	LookupBlob(ctx context.Context, repo string, d digest.Digest) (bloblookup.Lookup, error)
	ReadBlob(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, int64, error)
	JoinDownload(ctx context.Context, repo string, d digest.Digest, offset int64) (io.ReadCloser, int64, error)
	Manifest(ctx context.Context, d digest.Digest) (mediaType string, data []byte, err error)
	PutManifestAs(ctx context.Context, repo string, d digest.Digest, mediaType string, data []byte) error
	Tag(ctx context.Context, repo, tag string) (d digest.Digest, fetchedAt time.Time, err error)
	PutTag(ctx context.Context, repo, tag string, d digest.Digest, fetchedAt time.Time) error
} = (*Store)(nil)

func TestCommittedBlobSurvivesReopen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	data, d := randomBlob(t, 3*copyBufferSize+17)

	s, err := Open(ctx, Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	rc, size, coalesced, err := s.FetchBlob(ctx, testRepo, d, 0, bytesFetch(data, int64(len(data)), nil))
	if err != nil {
		t.Fatal(err)
	}
	if size != int64(len(data)) || coalesced {
		t.Errorf("FetchBlob: size %d coalesced %v, want %d false", size, coalesced, len(data))
	}
	if got, err := io.ReadAll(rc); err != nil || string(got) != string(data) {
		t.Fatalf("read %d bytes, err %v; want the blob's %d bytes", len(got), err, len(data))
	}
	rc.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	reg := prometheus.NewRegistry()
	s = openStore(t, Options{Dir: dir, Registerer: reg})
	if onDisk, err := os.ReadFile(filepath.Join(dir, "blobs", "sha256", d.Encoded()[:2], d.Encoded())); err != nil || string(onDisk) != string(data) {
		t.Errorf("blob file: %d bytes, err %v", len(onDisk), err)
	}
	rc, size, err = s.ReadBlob(ctx, d, 0)
	if err != nil {
		t.Fatalf("ReadBlob after reopen: %v", err)
	}
	defer rc.Close()
	if got, err := io.ReadAll(rc); err != nil || string(got) != string(data) || size != int64(len(data)) {
		t.Errorf("ReadBlob after reopen: %d of %d bytes, err %v", len(got), size, err)
	}
	if got := fetchAll(t, s, d, failFetch(t)); string(got) != string(data) {
		t.Errorf("FetchBlob of a cached blob returned other bytes")
	}
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Stats{Blobs: 1, Bytes: int64(len(data))}); st != want {
		t.Errorf("Stats = %+v, want %+v", st, want)
	}
	<-s.counted // the gauges are filled by Open's count in the background
	if got := metricValue(t, s.metrics.blobs); got != 1 {
		t.Errorf("blobs gauge = %v after reopen, want 1", got)
	}
	if got := metricValue(t, s.metrics.sizeBytes); got != float64(len(data)) {
		t.Errorf("size gauge = %v after reopen, want %d", got, len(data))
	}
	if repos := repositoriesUsing(t, s, d); len(repos) != 1 || repos[0] != testRepo {
		t.Errorf("repositories using the blob = %v, want [%s]", repos, testRepo)
	}
}

func TestOpenFailsWhenDirectoryInUse(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first, err := Open(context.Background(), Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}

	_, err = Open(context.Background(), Options{Dir: dir})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: err = %v, want ErrLocked", err)
	}
	if want := "data directory " + dir + " is in use by another regmirror process"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}

	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := Open(context.Background(), Options{Dir: dir})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	again.Close()
}

func TestOpenSweepsInterruptedDownloads(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	leftovers := []string{"tmp/0123.456", "tmp/nested/789"}
	for _, name := range leftovers {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	s := openStore(t, Options{Dir: dir})

	entries, err := os.ReadDir(s.tmpDir)
	if err != nil || len(entries) != 0 {
		t.Errorf("temp dir after Open: %d entries, err %v; want empty", len(entries), err)
	}
}

func TestOpenRequiresDir(t *testing.T) {
	t.Parallel()
	if _, err := Open(context.Background(), Options{}); err == nil {
		t.Fatal("Open without Dir succeeded")
	}
}

func TestRejectsInvalidDigests(t *testing.T) {
	t.Parallel()
	s := openStore(t, Options{})
	tests := []struct {
		name   string
		digest digest.Digest
		want   error
	}{
		{"uppercase hex", digest.Digest("sha256:" + strings.Repeat("AB", 32)), ErrInvalidDigest},
		{"short", "sha256:abc123", ErrInvalidDigest},
		{"long", digest.Digest("sha256:" + strings.Repeat("ab", 33)), ErrInvalidDigest},
		{"path traversal", "sha256:../x", ErrInvalidDigest},
		{"traversal of right length", digest.Digest("sha256:../../" + strings.Repeat("a", 58)), ErrInvalidDigest},
		{"no algorithm", digest.Digest(strings.Repeat("a", 64)), ErrInvalidDigest},
		{"empty", "", ErrInvalidDigest},
		{"md5", "md5:d41d8cd98f00b204e9800998ecf8427e", ErrUnsupportedDigest},
		{"sha384", digest.Digest("sha384:" + strings.Repeat("ab", 48)), ErrUnsupportedDigest},
		{"short sha512", digest.Digest("sha512:" + strings.Repeat("ab", 32)), ErrInvalidDigest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			if _, _, err := s.ReadBlob(ctx, tt.digest, 0); !errors.Is(err, tt.want) {
				t.Errorf("ReadBlob: err = %v, want %v", err, tt.want)
			}
			if _, _, _, err := s.FetchBlob(ctx, testRepo, tt.digest, 0, failFetch(t)); !errors.Is(err, tt.want) {
				t.Errorf("FetchBlob: err = %v, want %v", err, tt.want)
			}
			if _, _, err := s.Manifest(ctx, tt.digest); !errors.Is(err, tt.want) {
				t.Errorf("Manifest: err = %v, want %v", err, tt.want)
			}
			if err := s.PutTag(ctx, testRepo, "latest", tt.digest, time.Now()); !errors.Is(err, tt.want) {
				t.Errorf("PutTag: err = %v, want %v", err, tt.want)
			}
		})
	}
	t.Cleanup(func() {
		if names := dirEntries(t, s.blobRoot); len(names) > 0 {
			t.Errorf("blob tree holds %v after invalid requests", names)
		}
	})
}

func TestRunStopsWithContext(t *testing.T) {
	t.Parallel()
	s := openStore(t, Options{AccessFlushInterval: time.Millisecond, GCInterval: time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v, want nil after cancel", err)
	}
}

func TestCompactValueLogWithNothingToCollect(t *testing.T) {
	t.Parallel()
	s := openStore(t, Options{})
	if err := s.CompactValueLog(context.Background()); err != nil {
		t.Errorf("CompactValueLog: %v", err)
	}
}
