package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/internal/admin"
)

// Every problem of the storage section is reported at its line.
func TestStorageConfigProblemsAtTheirLines(t *testing.T) {
	t.Parallel()
	const cluster = "cluster:\n  self: http://10.0.0.1:5000\n  peers: [http://10.0.0.2:5000]\n  secret_file: /s\n"
	const head = cluster + "storage:\n  s3:\n"
	checkProblemsAtLines(t, []lineProblem{
		{"no endpoint", head + "    bucket: b\n", 6, "endpoint is required"},
		{"no bucket", head + "    endpoint: http://127.0.0.1:9000\n", 6, "bucket is required"},
		{"both secrets", head + "    endpoint: http://127.0.0.1:9000\n    bucket: b\n    access_key_id: k\n    secret_access_key: s\n    secret_access_key_file: /f\n", 11, "not both"},
		{"key without secret", head + "    endpoint: http://127.0.0.1:9000\n    bucket: b\n    access_key_id: k\n", 9, "go together"},
		{"negative budget", head + "    endpoint: http://127.0.0.1:9000\n    bucket: b\n    max_size: -1\n", 9, `size "-1"`},
		{"no cluster", "storage:\n  s3:\n    endpoint: http://127.0.0.1:9000\n    bucket: b\n", 2, "needs a cluster section"},
	})
}

// config check prints neither the inline secret access key nor the
// file's, and names a missing secret file by its path.
func TestStorageConfigCheckKeepsTheSecretAccessKeySecret(t *testing.T) {
	t.Parallel()
	secret := writeClusterSecret(t, clusterSecret)
	const cluster = "cluster:\n  self: http://10.0.0.1:5000\n  peers: [http://10.0.0.2:5000]\n  secret_file: "
	inline := writeConfig(t, cluster+secret+"\nstorage:\n  s3:\n    endpoint: http://127.0.0.1:9000\n    bucket: b\n    access_key_id: AKIAEXAMPLE\n    secret_access_key: inline-s3-secret-9f2c\n")
	code, stdout, stderr := runExit(t, "config", "check", "--config", inline)
	if code != exitOK {
		t.Fatalf("exit status %d:\n%s", code, stderr)
	}
	if strings.Contains(stdout+stderr, "inline-s3-secret-9f2c") {
		t.Errorf("the secret access key was printed:\n%s", stdout)
	}
	if !strings.Contains(stdout, "secret_access_key: "+redacted) || !strings.Contains(stdout, "access_key_id: AKIAEXAMPLE") {
		t.Errorf("the effective configuration does not show the storage section redacted:\n%s", stdout)
	}

	missing := filepath.Join(t.TempDir(), "no-such-s3-secret")
	withFile := writeConfig(t, cluster+secret+"\nstorage:\n  s3:\n    endpoint: http://127.0.0.1:9000\n    bucket: b\n    access_key_id: AKIAEXAMPLE\n    secret_access_key_file: "+missing+"\n")
	code, _, stderr = runExit(t, "config", "check", "--config", withFile)
	if code != exitConfig || !strings.Contains(stderr, "storage.s3.secret_access_key_file") || !strings.Contains(stderr, missing) {
		t.Errorf("exit status %d, stderr:\n%s\nwant the missing file named", code, stderr)
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
}

// The bucket's janitor spares what this replica's cache keeps (pushed
// content, pinned images) and nothing else; when the cache cannot be
// listed, it spares everything.
func TestBucketJanitorSparesWhatTheCacheKeeps(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store, err := cache.Open(ctx, cache.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	kept, other := []byte("pushed layer"), []byte("pulled layer")
	for _, data := range [][]byte{kept, other} {
		rc, _, _, err := store.FetchBlob(ctx, "docker.io/library/node", digest.FromBytes(data), 0,
			func(context.Context, int64) (io.ReadCloser, int64, int64, error) {
				return io.NopCloser(bytes.NewReader(data)), 0, int64(len(data)), nil
			})
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, rc)
		rc.Close()
	}
	if err := store.Keep(ctx, digest.FromBytes(kept), "pushed"); err != nil {
		t.Fatal(err)
	}
	keep := &bucketKeep{cache: admin.EvictionCache{Store: store}, log: slog.New(slog.DiscardHandler)}
	if !keep.keeps(digest.FromBytes(kept)) || keep.keeps(digest.FromBytes(other)) {
		t.Errorf("keeps(kept) = %v, keeps(other) = %v; want true, false",
			keep.keeps(digest.FromBytes(kept)), keep.keeps(digest.FromBytes(other)))
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	closed := &bucketKeep{cache: admin.EvictionCache{Store: store}, log: slog.New(slog.DiscardHandler)}
	if !closed.keeps(digest.FromBytes(other)) {
		t.Error("with the cache unreadable, the janitor may evict a blob")
	}
}
