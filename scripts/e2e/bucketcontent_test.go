package e2e

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/internal/s3test"
)

// ReadContent finds an intact blob and manifest, reports a blob and a
// manifest whose bytes do not match their keys and a key that is no
// digest, and lists other keys apart; the bucket and its objects are still
// there after the server is stopped and started again on the same port.
func TestS3ServerReadContentAndRestart(t *testing.T) {
	t.Parallel()
	s := s3test.Start(t)
	bucket := s.NewBucket(t)
	c := s.Client(t)
	ctx := t.Context()
	good := []byte("a blob")
	goodDigest := digest.FromBytes(good)
	torn := digest.FromBytes([]byte("the whole blob"))
	put(ctx, t, c, bucket, blobKey("p/", goodDigest), good)
	put(ctx, t, c, bucket, blobKey("p/", torn), []byte("the whole"))
	put(ctx, t, c, bucket, "p/blobs/sha256/zz/not-a-digest", []byte("x"))
	manifest := []byte(`{"schemaVersion":2}`)
	manifestDigest := digest.FromBytes(manifest)
	tornManifest := digest.FromBytes([]byte(`{"schemaVersion":2,"layers":[]}`))
	put(ctx, t, c, bucket, "p/manifests/sha256/"+manifestDigest.Encoded(), manifest)
	put(ctx, t, c, bucket, "p/manifests/sha256/"+tornManifest.Encoded(), []byte(`{"schemaVersion":2,`))
	put(ctx, t, c, bucket, "p/leases/janitor", []byte("{}"))
	put(ctx, t, c, bucket, "elsewhere", []byte("x"))

	check := func(when string) {
		t.Helper()
		contents, err := ReadContent(ctx, c, bucket, "p/")
		for _, want := range []string{torn.Encoded(), tornManifest.Encoded(), "not-a-digest"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: ReadContent error = %v, want one naming %s", when, err, want)
			}
		}
		if len(contents.Manifests) != 1 || contents.Manifests[manifestDigest] != int64(len(manifest)) {
			t.Errorf("%s: manifests = %v, want only %s of %d bytes", when, contents.Manifests, manifestDigest, len(manifest))
		}
		if len(contents.Blobs) != 1 || contents.Blobs[goodDigest] != int64(len(good)) {
			t.Errorf("%s: blobs = %v, want only %s of %d bytes", when, contents.Blobs, goodDigest, len(good))
		}
		if len(contents.Others) != 1 || contents.Others[0] != "p/leases/janitor" {
			t.Errorf("%s: others = %v, want [p/leases/janitor]", when, contents.Others)
		}
	}
	check("running")
	endpoint := s.Endpoint
	s.Stop()
	if _, err := ReadContent(ctx, c, bucket, "p/"); err == nil {
		t.Fatal("ReadContent succeeded with the server stopped")
	}
	s.Restart(t)
	if s.Endpoint != endpoint {
		t.Fatalf("started again on %s, want %s", s.Endpoint, endpoint)
	}
	check("started again")
}

func blobKey(prefix string, d digest.Digest) string {
	return prefix + "blobs/" + string(d.Algorithm()) + "/" + d.Encoded()[:2] + "/" + d.Encoded()
}

func put(ctx context.Context, t *testing.T, c *minio.Client, bucket, key string, data []byte) {
	t.Helper()
	if _, err := c.PutObject(ctx, bucket, key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}
