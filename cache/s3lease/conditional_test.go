package s3lease

import (
	"bytes"
	"context"
	"net/http"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/regmirror/regmirror/internal/s3test"
)

// The leases rest on the server refusing a second create of a key with
// If-None-Match: *, as S3 does: versitygw answers 412.
func TestServerRefusesSecondCreate(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	c, bucket := srv.Client(t), srv.NewBucket(t)
	first, err := putObject(t, c, bucket, "k", "first", createOnly())
	if err != nil {
		t.Fatalf("first PUT with If-None-Match: *: %v", err)
	}
	if _, err := putObject(t, c, bucket, "k", "second", createOnly()); status(err) != http.StatusPreconditionFailed {
		t.Fatalf("second PUT with If-None-Match: *: %v, want 412 Precondition Failed", err)
	}
	assertObject(t, c, bucket, "k", "first", first.ETag)
}

// They rest on the server honouring If-Match on PUT too: a PUT with the
// current ETag replaces the object, one with an older ETag is refused
// with 412, and one of a missing key with 404.
func TestServerHonoursIfMatchOnPut(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	c, bucket := srv.Client(t), srv.NewBucket(t)
	v1, err := putObject(t, c, bucket, "k", "v1", minio.PutObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v2, err := putObject(t, c, bucket, "k", "v2", ifMatch(v1.ETag))
	if err != nil {
		t.Fatalf("PUT with If-Match of the current ETag: %v", err)
	}
	if v2.ETag == v1.ETag {
		t.Fatalf("two bodies, one ETag %s", v1.ETag)
	}
	if _, err := putObject(t, c, bucket, "k", "v3", ifMatch(v1.ETag)); status(err) != http.StatusPreconditionFailed {
		t.Fatalf("PUT with If-Match of a replaced ETag: %v, want 412 Precondition Failed", err)
	}
	assertObject(t, c, bucket, "k", "v2", v2.ETag)
	if _, err := putObject(t, c, bucket, "missing", "v1", ifMatch(v1.ETag)); !isNotFound(err) {
		t.Fatalf("PUT with If-Match of a missing key: %v, want 404 Not Found", err)
	}
}

func putObject(t *testing.T, c *minio.Client, bucket, key, body string, opts minio.PutObjectOptions) (minio.UploadInfo, error) {
	t.Helper()
	return c.PutObject(context.Background(), bucket, key, bytes.NewReader([]byte(body)), int64(len(body)), opts)
}

// assertObject checks the body and ETag of key.
func assertObject(t *testing.T, c *minio.Client, bucket, key, body, etag string) {
	t.Helper()
	rc, info, _, err := minio.Core{Client: c}.GetObject(context.Background(), bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var got bytes.Buffer
	if _, err := got.ReadFrom(rc); err != nil {
		t.Fatal(err)
	}
	if got.String() != body || info.ETag != etag {
		t.Fatalf("%s holds %q, ETag %s; want %q, ETag %s", key, got.String(), info.ETag, body, etag)
	}
}

func status(err error) int { return minio.ToErrorResponse(err).StatusCode }
