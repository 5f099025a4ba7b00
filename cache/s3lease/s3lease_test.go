package s3lease

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/cache/s3blobs"
	"github.com/regmirror/regmirror/internal/s3test"
	"github.com/regmirror/regmirror/internal/testclock"
)

// One of many replicas racing for a free lease gets it; every other one
// gets a HeldError naming the winner.
func TestAcquireRace(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	l := newLeases(t, srv, Options{Bucket: srv.NewBucket(t)})
	winners, held := race(t, l, "sha256:abc", time.Minute)
	if len(winners) != 1 {
		t.Fatalf("%d replicas acquired the lease, want 1", len(winners))
	}
	won := winners[0]
	for _, h := range held {
		if h.Holder != won.Holder() || !h.Expires.Equal(won.Expires()) || h.Name != "sha256:abc" {
			t.Errorf("HeldError %+v; want the winner %s, until %s", *h, won.Holder(), won.Expires())
		}
	}
	assertHeld(t, l, "sha256:abc", won.Holder(), true)
}

// An expired lease is taken over; the old holder then can neither renew
// it nor release it, and the new holder keeps it.
func TestExpiredLeaseIsTakenOver(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := s3test.Start(t)
	clock := newClock()
	l := newLeases(t, srv, Options{Bucket: srv.NewBucket(t), Now: clock.Now})
	a := acquire(t, l, "janitor", "replica-a", time.Minute)

	clock.Advance(59 * time.Second)
	assertHeldBy(t, l, "janitor", "replica-b", "replica-a")
	clock.Advance(time.Second)
	assertHeld(t, l, "janitor", "replica-a", false)
	b := acquire(t, l, "janitor", "replica-b", time.Minute)
	if want := clock.Now().Add(time.Minute); !b.Expires().Equal(want) {
		t.Errorf("the new lease expires at %s, want %s", b.Expires(), want)
	}

	if err := a.Renew(ctx); !errors.Is(err, ErrLost) {
		t.Fatalf("renew of a lease taken over: %v, want ErrLost", err)
	}
	if err := a.Release(ctx); !errors.Is(err, ErrLost) {
		t.Fatalf("release of a lease taken over: %v, want ErrLost", err)
	}
	assertHeld(t, l, "janitor", "replica-b", true)
	if err := b.Renew(ctx); err != nil {
		t.Fatalf("the new holder renews: %v", err)
	}
}

// Of many replicas racing to take over an expired lease, one gets it.
func TestTakeoverRace(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	clock := newClock()
	l := newLeases(t, srv, Options{Bucket: srv.NewBucket(t), Now: clock.Now})
	acquire(t, l, "sha256:abc", "replica-gone", time.Minute)
	clock.Advance(2 * time.Minute)
	winners, held := race(t, l, "sha256:abc", time.Minute)
	if len(winners) != 1 {
		t.Fatalf("%d replicas took the expired lease over, want 1", len(winners))
	}
	for _, h := range held {
		if h.Holder != winners[0].Holder() {
			t.Errorf("HeldError names %s, want the winner %s", h.Holder, winners[0].Holder())
		}
	}
}

// Renew moves the expiry, so that the lease outlives its first TTL.
func TestRenewExtends(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	clock := newClock()
	l := newLeases(t, srv, Options{Bucket: srv.NewBucket(t), Now: clock.Now})
	a := acquire(t, l, "janitor", "replica-a", time.Minute)
	for range 3 {
		clock.Advance(40 * time.Second)
		if err := a.Renew(context.Background()); err != nil {
			t.Fatal(err)
		}
		if want := clock.Now().Add(time.Minute); !a.Expires().Equal(want) {
			t.Fatalf("renewed until %s, want %s", a.Expires(), want)
		}
	}
	assertHeldBy(t, l, "janitor", "replica-b", "replica-a")
}

// A Renew whose earlier write got through unanswered (a timeout, a retry)
// finds its own token under a new ETag, and renews rather than call the
// lease lost.
func TestRenewAfterLostAnswer(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	clock := newClock()
	l := newLeases(t, srv, Options{Bucket: srv.NewBucket(t), Now: clock.Now})
	a := acquire(t, l, "janitor", "replica-a", time.Minute)
	stale := a.etag
	clock.Advance(10 * time.Second)
	if err := a.Renew(context.Background()); err != nil {
		t.Fatal(err)
	}
	a.etag = stale // as if the renewal's answer had not arrived
	clock.Advance(10 * time.Second)
	if err := a.Renew(context.Background()); err != nil {
		t.Fatalf("renew after an unanswered renewal: %v", err)
	}
	if want := clock.Now().Add(time.Minute); !a.Expires().Equal(want) {
		t.Fatalf("renewed until %s, want %s", a.Expires(), want)
	}
}

// An Acquire whose create got through unanswered, and was retried into a
// 412, finds its own token and holds the lease.
func TestAcquireAfterLostAnswer(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	l := newLeases(t, srv, Options{Bucket: srv.NewBucket(t)})
	lease := &Lease{leases: l, name: "n", key: l.key("n"), holder: "replica-a", ttl: time.Minute, token: newToken()}
	if _, err := l.put(context.Background(), lease.key, lease.newRecord(time.Now()), createOnly()); err != nil {
		t.Fatal(err)
	}
	held, err := l.acquireRound(context.Background(), lease)
	if err != nil || held != nil || lease.etag == "" {
		t.Fatalf("acquire over its own unanswered create: held %v, err %v, ETag %q; want the lease", held, err, lease.etag)
	}
}

// Once released, a lease is free for another holder; releasing twice is
// harmless, and renewing a released lease fails with ErrLost.
func TestReleaseThenAcquire(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := s3test.Start(t)
	l := newLeases(t, srv, Options{Bucket: srv.NewBucket(t)})
	a := acquire(t, l, "sha256:abc", "replica-a", time.Hour)
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Release(ctx); err != nil {
		t.Fatalf("second release: %v", err)
	}
	if err := a.Renew(ctx); !errors.Is(err, ErrLost) {
		t.Fatalf("renew after release: %v, want ErrLost", err)
	}
	assertHeld(t, l, "sha256:abc", "", false)
	acquire(t, l, "sha256:abc", "replica-b", time.Hour)
	assertHeld(t, l, "sha256:abc", "replica-b", true)
}

// Release leaves an expired lease for the next Acquire to take over.
func TestReleaseLeavesExpiredLease(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	clock := newClock()
	l := newLeases(t, srv, Options{Bucket: srv.NewBucket(t), Now: clock.Now})
	a := acquire(t, l, "janitor", "replica-a", time.Minute)
	clock.Advance(time.Minute)
	if err := a.Release(context.Background()); err != nil {
		t.Fatalf("release of an expired lease: %v", err)
	}
	assertHeld(t, l, "janitor", "replica-a", false)
	acquire(t, l, "janitor", "replica-b", time.Minute)
}

// Leases sit under <prefix>leases/<name>, and one prefix's leases are not
// another's.
func TestLeaseKeys(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	one := newLeases(t, srv, Options{Bucket: bucket, Prefix: "replicas"})
	other := newLeases(t, srv, Options{Bucket: bucket, Prefix: "others/"})
	acquire(t, one, "sha256:abc", "replica-a", time.Minute)
	acquire(t, other, "sha256:abc", "replica-b", time.Minute)
	for _, key := range []string{"replicas/leases/sha256:abc", "others/leases/sha256:abc"} {
		if _, err := srv.Client(t).StatObject(context.Background(), bucket, key, minio.StatObjectOptions{}); err != nil {
			t.Errorf("no lease object %s: %v", key, err)
		}
	}
}

// race runs replicas acquiring name at once, and returns those that got
// it and the HeldErrors of the others; any other error fails the test.
func race(t *testing.T, l *Leases, name string, ttl time.Duration) ([]*Lease, []*HeldError) {
	t.Helper()
	const replicas = 12
	var (
		mu      sync.Mutex
		winners []*Lease
		held    []*HeldError
		wg      sync.WaitGroup
	)
	start := make(chan struct{})
	for i := range replicas {
		wg.Go(func() {
			<-start
			lease, err := l.Acquire(context.Background(), name, fmt.Sprintf("replica-%d", i), ttl)
			mu.Lock()
			defer mu.Unlock()
			var he *HeldError
			switch {
			case err == nil:
				winners = append(winners, lease)
			case errors.As(err, &he):
				held = append(held, he)
			default:
				t.Errorf("replica-%d: %v", i, err)
			}
		})
	}
	close(start)
	wg.Wait()
	if len(winners)+len(held) != replicas {
		t.Fatalf("%d winners and %d held of %d replicas", len(winners), len(held), replicas)
	}
	return winners, held
}

// newLeases makes leases on srv, with a client made as the blob store's
// is, trying each request once.
func newLeases(t *testing.T, srv *s3test.Server, opts Options) *Leases {
	t.Helper()
	return newLeasesAs(t, srv, srv.AccessKey, srv.SecretKey, opts)
}

func newLeasesAs(t *testing.T, srv *s3test.Server, accessKey, secretKey string, opts Options) *Leases {
	t.Helper()
	client, err := s3blobs.NewClient(s3blobs.Options{Endpoint: srv.Endpoint, DisableTLS: true, Region: s3test.Region,
		Bucket: opts.Bucket, AccessKeyID: accessKey, SecretAccessKey: secretKey, MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	l, err := New(client, opts)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func acquire(t *testing.T, l *Leases, name, holder string, ttl time.Duration) *Lease {
	t.Helper()
	lease, err := l.Acquire(context.Background(), name, holder, ttl)
	if err != nil {
		t.Fatalf("%s acquires %s: %v", holder, name, err)
	}
	if lease.Holder() != holder || lease.Name() != name {
		t.Fatalf("lease of %s for %s, want %s for %s", lease.Name(), lease.Holder(), name, holder)
	}
	return lease
}

// assertHeldBy checks that holder cannot acquire name, held by holdingNow.
func assertHeldBy(t *testing.T, l *Leases, name, holder, holdingNow string) {
	t.Helper()
	_, err := l.Acquire(context.Background(), name, holder, time.Minute)
	var he *HeldError
	if !errors.As(err, &he) || he.Holder != holdingNow {
		t.Fatalf("%s acquires %s: %v, want it held by %s", holder, name, err, holdingNow)
	}
}

// assertHeld checks what Held says of name.
func assertHeld(t *testing.T, l *Leases, name, holder string, live bool) {
	t.Helper()
	got, _, ok, err := l.Held(context.Background(), name)
	if err != nil || got != holder || ok != live {
		t.Fatalf("Held(%s) = %q, %v, %v; want %q, %v", name, got, ok, err, holder, live)
	}
}

// newClock is a clock that moves only when told.
func newClock() *testclock.Clock { return testclock.New(time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)) }

// A blob's lease is named by its digest, and is a lease like any other.
func TestBlobName(t *testing.T) {
	t.Parallel()
	d := digest.FromString("layer")
	if got, want := BlobName(d), "blob-sha256-"+d.Encoded(); got != want {
		t.Fatalf("BlobName(%s) = %q, want %q", d, got, want)
	}
	srv := s3test.Start(t)
	l := newLeases(t, srv, Options{Bucket: srv.NewBucket(t)})
	acquire(t, l, BlobName(d), "replica-a", time.Minute)
	assertHeld(t, l, BlobName(d), "replica-a", true)
}

// A lease that claims to last far longer than any holder may take one
// for (written by hand, or by a clock far ahead) is taken over as
// expired; one within MaxTTL holds.
func TestLeaseClaimingMoreThanMaxTTLIsTakenOver(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	l := newLeases(t, srv, Options{Bucket: srv.NewBucket(t)})
	ctx := context.Background()
	now := time.Now()
	for name, expires := range map[string]time.Time{"forever": now.AddDate(100, 0, 0), "long": now.Add(MaxTTL + time.Hour)} {
		if _, err := l.put(ctx, l.key(name), record{Holder: "someone", Expires: expires, Taken: now, Token: "t"}, minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Acquire(ctx, name, "me", time.Minute); err != nil {
			t.Errorf("lease %s, claiming to last until %s: %v; want it taken over", name, expires.Format(time.DateOnly), err)
		}
	}
	if _, err := l.put(ctx, l.key("fair"), record{Holder: "someone", Expires: now.Add(MaxTTL / 2), Taken: now, Token: "t"}, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	var held *HeldError
	if _, err := l.Acquire(ctx, "fair", "me", time.Minute); !errors.As(err, &held) {
		t.Errorf("a lease within MaxTTL: %v; want it held", err)
	}
	if _, err := l.Acquire(ctx, "too-long", "me", MaxTTL+time.Second); err == nil {
		t.Error("a TTL above MaxTTL was taken")
	}
}
