package s3test

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"
)

// The server stores and returns objects in the buckets it makes, and
// after Stop nothing answers on its endpoint.
func TestS3ServerServesAndStops(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := Start(t)
	bucket := s.NewBucket(t)
	if other := s.NewBucket(t); other == bucket {
		t.Fatalf("two buckets named %s", bucket)
	}
	c := s.Client(t)
	data := []byte("hello, bucket")
	if _, err := c.PutObject(ctx, bucket, "a/b", bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	obj, err := c.GetObject(ctx, bucket, "a/b", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(obj)
	obj.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("got %q, %v; want %q", got, err, data)
	}
	s.Stop()
	s.Stop()
	if _, err := c.ListBuckets(ctx); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("list buckets of a stopped server: %v, want connection refused", err)
	}
}
