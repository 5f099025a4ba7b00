package s3blobs

import (
	"context"
	"crypto/rand"
	"io"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/cache/blobstore"
	"github.com/regmirror/regmirror/cache/storagetest"
	"github.com/regmirror/regmirror/internal/s3test"
	"github.com/regmirror/regmirror/internal/testnet"
)

// The bucket store passes the storage contract, each subtest in a bucket
// of its own on one versitygw.
func TestContract(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	storagetest.Run(t, func(t *testing.T) blobstore.Interface { return newTestStore(t, srv, Options{}) })
}

// newTestStore opens a store on srv with opts, filling in what reaches
// srv: its endpoint and credentials, and a new bucket unless opts names
// one. Its spool directory is the test's.
func newTestStore(t *testing.T, srv *s3test.Server, opts Options) *Store {
	t.Helper()
	opts = serverOptions(t, srv, opts)
	s, err := New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func serverOptions(t *testing.T, srv *s3test.Server, opts Options) Options {
	t.Helper()
	if opts.Endpoint == "" {
		opts.Endpoint, opts.DisableTLS = srv.Endpoint, true
	}
	if opts.AccessKeyID == "" {
		opts.AccessKeyID, opts.SecretAccessKey = srv.AccessKey, srv.SecretKey
	}
	if opts.Bucket == "" {
		opts.Bucket = srv.NewBucket(t)
	}
	if opts.Region == "" {
		opts.Region = s3test.Region
	}
	if opts.SpoolDir == "" {
		opts.SpoolDir = t.TempDir()
	}
	return opts
}

// randomBlob makes n random bytes and their digest.
func randomBlob(t *testing.T, n int) ([]byte, digest.Digest) {
	t.Helper()
	data := make([]byte, n)
	rand.Read(data)
	return data, digest.FromBytes(data)
}

// put writes and commits data.
func put(t *testing.T, s *Store, data []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(data)
	storagetest.Put(t, s, d, data)
	return d
}

func readBlob(t *testing.T, s *Store, d digest.Digest) []byte {
	t.Helper()
	f, err := s.Open(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// New refuses a bucket it cannot use, saying which bucket at which
// endpoint, and never quoting the secret.
func TestS3NewFailsClearly(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	tests := []struct {
		name string
		opts Options
		want string // in the error, beside the endpoint and bucket
	}{
		{"nothing listening", Options{Endpoint: testnet.FreeAddr(t), DisableTLS: true}, "refused"},
		{"wrong secret", Options{AccessKeyID: srv.AccessKey, SecretAccessKey: "not-" + srv.SecretKey}, "signature"},
		{"unknown access key", Options{AccessKeyID: "nobody", SecretAccessKey: srv.SecretKey}, "access key"},
		{"missing bucket", Options{Bucket: "no-such-bucket"}, "does not exist"},
		{"TLS to a plain HTTP server", Options{Endpoint: srv.Endpoint}, "http"},
		{"secret without access key", Options{AccessKeyID: "", SecretAccessKey: srv.SecretKey}, "access key ID"},
		{"endpoint with a path", Options{Endpoint: "http://" + srv.Endpoint + "/" + bucket}, "no path"},
		{"endpoint with credentials", Options{Endpoint: "http://" + srv.AccessKey + ":" + srv.SecretKey + "@" + srv.Endpoint},
			"credentials"},
		{"missing spool directory", Options{SpoolDir: "/nonexistent/spool"}, "/nonexistent/spool"},
		{"host:port with credentials", Options{Endpoint: srv.AccessKey + ":" + srv.SecretKey + "@" + srv.Endpoint},
			"credentials"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := tt.opts
			if opts.Bucket == "" {
				opts.Bucket = bucket
			}
			if opts.AccessKeyID == "" && opts.SecretAccessKey != "" {
				// The case of a lone secret: keep it lone.
				opts.Endpoint, opts.DisableTLS = srv.Endpoint, true
			} else {
				opts = serverOptions(t, srv, opts)
			}
			s, err := New(context.Background(), opts)
			if err == nil {
				t.Fatalf("New succeeded: %+v", s)
			}
			msg := err.Error()
			t.Log(msg)
			if !strings.Contains(msg, `bucket "`+opts.Bucket+`"`) || !strings.Contains(msg, srv.Endpoint[:strings.Index(srv.Endpoint, ":")]) {
				t.Errorf("error %q names neither the bucket %q nor the endpoint", msg, opts.Bucket)
			}
			if !strings.Contains(strings.ToLower(msg), strings.ToLower(tt.want)) {
				t.Errorf("error %q does not say %q", msg, tt.want)
			}
			if strings.Contains(msg, srv.SecretKey) {
				t.Errorf("error %q quotes the secret", msg)
			}
		})
	}
}

// NewClient reaches the bucket New would, and refuses options New would
// refuse before reaching the server, without quoting the secret.
func TestS3NewClient(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := s3test.Start(t)
	opts := serverOptions(t, srv, Options{Prefix: "replica"})
	s := newTestStore(t, srv, opts)
	data, _ := randomBlob(t, 1<<10)
	d := put(t, s, data)
	client, err := NewClient(opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.StatObject(ctx, opts.Bucket, s.key(d), minio.StatObjectOptions{}); err != nil {
		t.Fatalf("the client does not see the store's blob: %v", err)
	}

	bad := opts
	bad.Endpoint = "http://" + srv.AccessKey + ":" + srv.SecretKey + "@" + srv.Endpoint
	_, err = NewClient(bad)
	if err == nil || !strings.Contains(err.Error(), `bucket "`+opts.Bucket+`"`) || strings.Contains(err.Error(), srv.SecretKey) {
		t.Fatalf("NewClient of an endpoint with credentials: %v, want an error naming the bucket, not the secret", err)
	}
}
