package s3blobs

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"slices"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/cache/blobstore"
	"github.com/regmirror/regmirror/internal/s3test"
)

// Blobs are stored under <prefix>blobs/<alg>/<xx>/<hex>; Walk lists those
// and skips every other key, and stores under two prefixes of one bucket
// see only their own blobs.
func TestS3KeysAndPrefixes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := s3test.Start(t)
	opts := serverOptions(t, srv, Options{Prefix: "one"})
	one := newTestStore(t, srv, opts)
	opts.Prefix = "two/"
	two := newTestStore(t, srv, opts)

	d1 := put(t, one, []byte("blob of one"))
	d2 := put(t, two, []byte("blob of two"))
	if want := "one/blobs/sha256/" + d1.Encoded()[:2] + "/" + d1.Encoded(); one.key(d1) != want {
		t.Fatalf("key = %s, want %s", one.key(d1), want)
	}
	stat := func(key string) error {
		_, err := srv.Client(t).StatObject(ctx, opts.Bucket, key, minio.StatObjectOptions{})
		return err
	}
	if err := stat(one.key(d1)); err != nil {
		t.Fatalf("the blob is not at its key: %v", err)
	}
	misplaced := digest.FromString("misplaced")
	for _, key := range []string{
		"one/blobs/sha256/ab/not-a-digest",
		"one/blobs/sha256/00/" + misplaced.Encoded(),
		"one/blobs/md5/" + d1.Encoded()[:2] + "/" + d1.Encoded(),
		"one/blobs/" + d1.Encoded(),
		"one/elsewhere",
	} {
		if _, err := srv.Client(t).PutObject(ctx, opts.Bucket, key, strings.NewReader("x"), 1, minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		s    *Store
		want digest.Digest
	}{{one, d1}, {two, d2}} {
		var listed []digest.Digest
		if err := tc.s.Walk(ctx, func(d digest.Digest) error { listed = append(listed, d); return nil }); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(listed, []digest.Digest{tc.want}) {
			t.Errorf("walk under %q = %v, want [%s]", tc.s.prefix, listed, tc.want)
		}
	}
	if _, err := two.Stat(ctx, d1); err == nil {
		t.Error("the store under two/ sees the blob of one/")
	}
}

// An endpoint given as a URL works as host:port does, its scheme choosing
// plain HTTP.
func TestS3EndpointURL(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	s := newTestStore(t, srv, Options{Endpoint: "http://" + srv.Endpoint + "/"})
	data := []byte("through a URL endpoint")
	if got := readBlob(t, s, put(t, s, data)); !bytes.Equal(got, data) {
		t.Fatalf("read %q, want %q", got, data)
	}
}

// A File seeks from its start, its position and its end; its Stat names
// the blob; after Close it reads no more.
func TestS3FileSeekStatClose(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newTestStore(t, s3test.Start(t), Options{})
	data := []byte("0123456789abcdef")
	d := put(t, s, data)
	f, err := s.Open(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := f.Stat()
	if err != nil || fi.Name() != d.Encoded() || fi.Size() != int64(len(data)) || fi.IsDir() || fi.ModTime().IsZero() {
		t.Fatalf("stat = %v, %v", fi, err)
	}
	read4 := func() string {
		t.Helper()
		p := make([]byte, 4)
		if _, err := io.ReadFull(f, p); err != nil {
			t.Fatal(err)
		}
		return string(p)
	}
	steps := []struct {
		offset int64
		whence int
		want   string
	}{
		{2, io.SeekStart, "2345"},
		{2, io.SeekCurrent, "89ab"},
		{-4, io.SeekEnd, "cdef"},
		{-8, io.SeekCurrent, "89ab"},
	}
	for _, st := range steps {
		if _, err := f.Seek(st.offset, st.whence); err != nil {
			t.Fatal(err)
		}
		if got := read4(); got != st.want {
			t.Fatalf("after seek(%d, %d) read %q, want %q", st.offset, st.whence, got, st.want)
		}
	}
	if _, err := f.Seek(-1, io.SeekStart); err == nil {
		t.Fatal("seek to -1 succeeded")
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Read(make([]byte, 1)); err == nil {
		t.Fatal("read after close succeeded")
	}
}

// Close may come while a Read is in flight, from the goroutine that stops
// a download (the cache closes a body to unblock it when its download
// ends): it ends the Read with an error, and neither races with it nor
// leaves it reading on.
func TestS3FileCloseDuringRead(t *testing.T) {
	t.Parallel()
	s := newTestStore(t, s3test.Start(t), Options{})
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	d := put(t, s, data)
	for range 20 {
		f, err := s.Open(t.Context(), d)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Read(make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			p := make([]byte, 512)
			for {
				if _, err := f.Read(p); err != nil {
					done <- err
					return
				}
			}
		}()
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err == io.EOF {
			continue // the Read got to the end first
		} else if !errors.Is(err, fs.ErrClosed) {
			t.Errorf("a Read during Close ended with %v; want fs.ErrClosed", err)
		}
	}
}

// An empty blob is stored, stated, listed and read like any other.
func TestS3EmptyBlob(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newTestStore(t, s3test.Start(t), Options{})
	d := put(t, s, nil)
	if info, err := s.Stat(ctx, d); err != nil || info.Size != 0 {
		t.Fatalf("stat = %+v, %v; want size 0", info, err)
	}
	if got := readBlob(t, s, d); len(got) != 0 {
		t.Fatalf("read %d bytes of an empty blob", len(got))
	}
	var listed []digest.Digest
	if err := s.Walk(ctx, func(d digest.Digest) error { listed = append(listed, d); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(listed, []digest.Digest{d}) {
		t.Fatalf("walk = %v, want [%s]", listed, d)
	}
}

// WalkInfo tells each blob's size and modification time as Stat does,
// and Bucket and Prefix say where the blobs are.
func TestS3WalkInfo(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := s3test.Start(t)
	opts := serverOptions(t, srv, Options{Prefix: "replicas"})
	s := newTestStore(t, srv, opts)
	if s.Bucket() != opts.Bucket || s.Prefix() != "replicas/" {
		t.Fatalf("Bucket, Prefix = %q, %q; want %q, %q", s.Bucket(), s.Prefix(), opts.Bucket, "replicas/")
	}
	want := map[digest.Digest]blobstore.Info{}
	for _, n := range []int{0, 1, 3 << 10} {
		data, _ := randomBlob(t, n)
		d := put(t, s, data)
		info, err := s.Stat(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		want[d] = info
	}
	got := map[digest.Digest]blobstore.Info{}
	if err := s.WalkInfo(ctx, func(d digest.Digest, info blobstore.Info) error { got[d] = info; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("WalkInfo listed %d blobs, want %d", len(got), len(want))
	}
	for d, w := range want {
		if g := got[d]; g.Size != w.Size || !g.ModTime.Equal(w.ModTime) {
			t.Errorf("WalkInfo says %s is %+v, Stat %+v", d, g, w)
		}
	}
}
