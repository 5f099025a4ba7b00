package s3lease

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/regmirror/regmirror/internal/s3test"
)

// A client the server refuses gets the server's refusal, naming the lease
// object, and neither a lease nor a HeldError; nor does it learn who
// holds the lease, or take a free one for free.
func TestWrongCredentials(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	acquire(t, newLeases(t, srv, Options{Bucket: bucket}), "janitor", "replica-a", time.Minute)
	tests := []struct {
		name, accessKey, secretKey string
		want                       string // in the error
	}{
		{"wrong secret", srv.AccessKey, "not-" + srv.SecretKey, "signature"},
		// versitygw answers 404 XAdminUserNotFound, not S3's 403.
		{"unknown access key", "nobody", srv.SecretKey, "access key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := newLeasesAs(t, srv, tt.accessKey, tt.secretKey, Options{Bucket: bucket})
			for _, name := range []string{"janitor", "free"} {
				lease, err := l.Acquire(ctx, name, "replica-b", time.Minute)
				t.Logf("acquire %s: %v", name, err)
				assertRefused(t, err, tt.want)
				if lease != nil {
					t.Errorf("acquire %s returned a lease", name)
				}
				if err != nil && !strings.Contains(err.Error(), "s3://"+bucket+"/leases/"+name) {
					t.Errorf("error %q does not name the lease object", err)
				}
				holder, _, ok, err := l.Held(ctx, name)
				assertRefused(t, err, tt.want)
				if holder != "" || ok {
					t.Errorf("Held(%s) with refused credentials says %q, %v", name, holder, ok)
				}
			}
		})
	}
}

// assertRefused checks that err is the server's refusal saying want, not
// a HeldError.
func assertRefused(t *testing.T, err error, want string) {
	t.Helper()
	var he *HeldError
	var resp minio.ErrorResponse
	switch {
	case errors.As(err, &he):
		t.Errorf("refused credentials got %v, a HeldError", err)
	case !errors.As(err, &resp) || resp.StatusCode < 400:
		t.Errorf("refused credentials got %v, want the server's refusal", err)
	case !strings.Contains(strings.ToLower(err.Error()), want):
		t.Errorf("refused credentials got %v, which does not say %q", err, want)
	}
}

// With the server gone, every call fails with an error that claims
// neither a lease nor a holder: Acquire no HeldError, Renew and Release
// no ErrLost (the holder may count on its lease until it expires).
func TestStoppedServer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := s3test.Start(t)
	l := newLeases(t, srv, Options{Bucket: srv.NewBucket(t)})
	a := acquire(t, l, "janitor", "replica-a", time.Minute)
	srv.Stop()

	lease, err := l.Acquire(ctx, "sha256:abc", "replica-a", time.Minute)
	var he *HeldError
	if err == nil || lease != nil || errors.As(err, &he) {
		t.Errorf("acquire with the server stopped: %v, %v; want an error, not a HeldError", lease, err)
	}
	_, _, ok, err := l.Held(ctx, "janitor")
	if err == nil || ok {
		t.Errorf("held with the server stopped: %v, %v; want an error", ok, err)
	}
	for op, err := range map[string]error{"renew": a.Renew(ctx), "release": a.Release(ctx)} {
		t.Logf("%s: %v", op, err)
		if err == nil || errors.Is(err, ErrLost) {
			t.Errorf("%s with the server stopped: %v, want an error other than ErrLost", op, err)
		}
	}
}

// An object under leases/ that is not a lease is an error, neither taken
// over nor taken for a holder.
func TestNotALease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	l := newLeases(t, srv, Options{Bucket: bucket})
	body := []byte("written by hand")
	if _, err := srv.Client(t).PutObject(ctx, bucket, "leases/janitor", bytes.NewReader(body), int64(len(body)),
		minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err := l.Acquire(ctx, "janitor", "replica-a", time.Minute)
	var he *HeldError
	if err == nil || errors.As(err, &he) || !strings.Contains(err.Error(), "does not hold a lease") {
		t.Fatalf("acquire over a stray object: %v, want an error saying it is not a lease", err)
	}
	if _, _, _, err := l.Held(ctx, "janitor"); err == nil {
		t.Fatal("Held of a stray object succeeded")
	}
}

// New and Acquire refuse what cannot work before reaching the server.
func TestRefusesBadArguments(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	l := newLeases(t, srv, Options{Bucket: srv.NewBucket(t)})
	if _, err := New(nil, Options{Bucket: "b"}); err == nil {
		t.Error("New without a client succeeded")
	}
	if _, err := New(srv.Client(t), Options{Bucket: "x"}); err == nil {
		t.Error("New with an invalid bucket name succeeded")
	}
	tests := []struct {
		name, lease, holder string
		ttl                 time.Duration
	}{
		{"no name", "", "replica-a", time.Minute},
		{"no holder", "janitor", "", time.Minute},
		{"zero TTL", "janitor", "replica-a", 0},
		{"negative TTL", "janitor", "replica-a", -time.Second},
	}
	for _, tt := range tests {
		if _, err := l.Acquire(context.Background(), tt.lease, tt.holder, tt.ttl); err == nil {
			t.Errorf("%s: acquire succeeded", tt.name)
		}
	}
}
