package s3blobs

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/internal/s3test"
)

// With the server gone, every operation fails, with an error that does
// not claim the blob is missing, and an open File's next read fails.
func TestS3StoppedServerFails(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := s3test.Start(t)
	s := newTestStore(t, srv, Options{MaxRetries: 1})
	data, _ := randomBlob(t, 10<<10)
	d := put(t, s, data)
	f, err := s.Open(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	srv.Stop()

	notMissing := func(op string, err error) {
		t.Helper()
		t.Logf("%s: %v", op, err)
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s with the server stopped: %v, want an error other than fs.ErrNotExist", op, err)
		}
	}
	_, err = s.Open(ctx, d)
	notMissing("open", err)
	_, err = s.Stat(ctx, d)
	notMissing("stat", err)
	notMissing("remove", s.Remove(ctx, d))
	notMissing("walk", s.Walk(ctx, func(digest.Digest) error { return nil }))
	_, err = f.Read(make([]byte, 10))
	notMissing("read", err)
	_, err = f.ReadAt(make([]byte, 10), 5)
	notMissing("read at", err)
	w, err := s.Create(ctx, digest.FromString("x"))
	if err != nil {
		t.Fatalf("create needs no server, but: %v", err)
	}
	defer w.Close()
	w.Write([]byte("x"))
	notMissing("commit", w.Commit(ctx))
}

// A writer closed uncommitted leaves nothing in the bucket nor in the
// spool directory; the spool file has no name even while it is written.
func TestS3UncommittedWriterLeavesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := s3test.Start(t)
	opts := serverOptions(t, srv, Options{})
	s := newTestStore(t, srv, opts)
	data, d := randomBlob(t, 100<<10)
	w, err := s.Create(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	assertDirEmpty(t, opts.SpoolDir)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	assertBucketEmpty(t, srv, opts.Bucket)
	if err := w.Commit(ctx); err == nil {
		t.Fatal("commit after close succeeded")
	}
	assertBucketEmpty(t, srv, opts.Bucket)
}

// A Commit whose context is cancelled in the middle of a multipart upload
// fails, leaves no object under the blob's key and no upload behind, and
// can be tried again.
func TestS3CommitCancelledMidUpload(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// One part's body is held once a megabyte has gone out and the
	// context is cancelled: the upload cannot complete.
	trip := &trippingDialer{threshold: 1 << 20, trip: cancel}
	opts := serverOptions(t, srv, Options{PartSize: 5 << 20, Transport: &http.Transport{DialContext: trip.DialContext}})
	s := newTestStore(t, srv, opts)
	data, d := randomBlob(t, 11<<20) // three parts
	w, err := s.Create(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	trip.armed.Store(true)
	err = w.Commit(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("commit with the context cancelled midway: %v, want context.Canceled", err)
	}
	if trip.armed.Load() {
		t.Fatal("the commit never sent a megabyte")
	}
	assertBucketEmpty(t, srv, opts.Bucket)
	if err := w.Commit(context.Background()); err != nil {
		t.Fatalf("commit again: %v", err)
	}
	if got := readBlob(t, s, d); !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes after the second commit, want the %d written", len(got), len(data))
	}
}

// trippingDialer dials connections that count the bytes written on them
// once armed; the write that takes the count past threshold disarms it,
// calls trip, and is held until its connection is closed, as the HTTP
// transport does when the request's context is cancelled.
type trippingDialer struct {
	threshold int64
	trip      func()
	armed     atomic.Bool
	written   atomic.Int64
}

func (d *trippingDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var dialer net.Dialer
	c, err := dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &trippingConn{Conn: c, d: d, closed: make(chan struct{})}, nil
}

type trippingConn struct {
	net.Conn
	d         *trippingDialer
	tripped   atomic.Bool
	closed    chan struct{}
	closeOnce sync.Once
}

func (c *trippingConn) Write(p []byte) (int, error) {
	if c.d.armed.Load() && c.d.written.Add(int64(len(p))) > c.d.threshold && c.d.armed.CompareAndSwap(true, false) {
		c.tripped.Store(true)
		c.d.trip()
	}
	if c.tripped.Load() {
		<-c.closed
		return 0, net.ErrClosed
	}
	return c.Conn.Write(p)
}

func (c *trippingConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// assertBucketEmpty checks that the bucket holds no object and no
// incomplete multipart upload.
func assertBucketEmpty(t *testing.T, srv *s3test.Server, bucket string) {
	t.Helper()
	ctx := context.Background()
	c := srv.Client(t)
	for obj := range c.ListObjects(ctx, bucket, minio.ListObjectsOptions{Recursive: true}) {
		if obj.Err != nil {
			t.Fatal(obj.Err)
		}
		t.Errorf("bucket holds %s", obj.Key)
	}
	for u := range c.ListIncompleteUploads(ctx, bucket, "", true) {
		if u.Err != nil {
			t.Fatal(u.Err)
		}
		t.Errorf("bucket holds an incomplete upload of %s", u.Key)
	}
}

func assertDirEmpty(t *testing.T, dir string) {
	t.Helper()
	names, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range names {
		t.Errorf("%s holds %s", dir, e.Name())
	}
}

// RemoveStaleUploads aborts the incomplete uploads of blob keys under the
// prefix that are old enough, and nothing else; New's own housekeeping
// leaves a fresh one alone.
func TestS3RemoveStaleUploads(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := s3test.Start(t)
	opts := serverOptions(t, srv, Options{Prefix: "replica"})
	s := newTestStore(t, srv, opts)
	core := minio.Core{Client: srv.Client(t)}
	blobKey := s.key(digest.FromString("cut short"))
	for _, key := range []string{blobKey, "elsewhere/" + blobKey, "replica/probe/x"} {
		if _, err := core.NewMultipartUpload(ctx, opts.Bucket, key, minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := New(ctx, opts); err != nil {
		t.Fatal(err)
	}
	if got := incompleteUploads(t, srv, opts.Bucket); len(got) != 3 {
		t.Fatalf("New aborted fresh uploads: %v left, want 3", got)
	}
	n, err := s.RemoveStaleUploads(ctx, 0)
	if err != nil || n != 1 {
		t.Fatalf("RemoveStaleUploads = %d, %v; want 1", n, err)
	}
	got := incompleteUploads(t, srv, opts.Bucket)
	if len(got) != 2 || got[blobKey] {
		t.Fatalf("uploads left: %v, want all but %s", got, blobKey)
	}
}

func incompleteUploads(t *testing.T, srv *s3test.Server, bucket string) map[string]bool {
	t.Helper()
	keys := map[string]bool{}
	for u := range srv.Client(t).ListIncompleteUploads(context.Background(), bucket, "", true) {
		if u.Err != nil {
			t.Fatal(u.Err)
		}
		keys[u.Key] = true
	}
	return keys
}
