package s3janitor

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/cache/s3lease"
)

// A run evicts the least recently used blobs until the bucket fits the
// low watermark, with the accesses of another replica, flushed to the
// bucket, counting as this one's own; blobs never accessed go first, by
// their upload time.
func TestEvictsLeastRecentlyUsedAcrossReplicas(t *testing.T) {
	t.Parallel()
	b := newBucket(t)
	a, c := b.put(t, 1000), b.put(t, 1000)
	b.put(t, 1000)
	b.put(t, 1000)
	other := b.replica(t, "replica-b", Options{MaxSize: 1 << 30})
	other.Touch(a)
	b.clock.Advance(time.Minute)
	other.Touch(c)
	if err := other.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	b.clock.Advance(time.Hour)

	// 4000 bytes over a budget of 2500: down to 2250, two blobs go.
	stats := b.replica(t, "replica-a", Options{MaxSize: 2500}).once(t)
	b.assertBlobs(t, a, c)
	if !stats.Ran || stats.Blobs != 4 || stats.Bytes != 4000 || stats.Evicted != 2 || stats.EvictedBytes != 2000 ||
		stats.OverBudget || stats.AccessObjects != 1 {
		// replica-a, which touched nothing, wrote no access object.
		t.Errorf("stats %+v; want 4 blobs of 4000 bytes, 2 evicted of 2000, replica-b's access object read", stats)
	}

	// Over a budget of 1500, a goes: replica-b read it before c.
	b.replica(t, "replica-a", Options{MaxSize: 1500}).once(t)
	b.assertBlobs(t, c)
}

// A bucket within its budget loses nothing.
func TestWithinBudgetEvictsNothing(t *testing.T) {
	t.Parallel()
	b := newBucket(t)
	x, y := b.put(t, 100), b.put(t, 100)
	stats := b.replica(t, "replica-a", Options{MaxSize: 200}).once(t)
	b.assertBlobs(t, x, y)
	if !stats.Ran || stats.Evicted != 0 || stats.Bytes != 200 || stats.OverBudget {
		t.Errorf("stats %+v; want a run that evicted nothing", stats)
	}
}

// A blob that must stay stays while the reason holds, and goes once it
// does not; the rest are evicted around it, and the run reports the
// bucket over budget and why.
func TestKeeps(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// keep makes x a blob that must stay, and returns what lets it go.
		keep func(t *testing.T, b *bucket, r *replica, x digest.Digest, keeping *sync.Map) (release func())
		// kept reads the count of the reason from the stats.
		kept func(Stats) int
	}{
		{"fill lease held", func(t *testing.T, b *bucket, r *replica, x digest.Digest, _ *sync.Map) func() {
			lease, err := r.leases.Acquire(context.Background(), s3lease.BlobName(x), "replica-b", s3lease.MaxTTL)
			if err != nil {
				t.Fatal(err)
			}
			return func() {
				if err := lease.Release(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
		}, func(s Stats) int { return s.KeptLeased }},
		{"fill lease of a repository held", func(t *testing.T, b *bucket, r *replica, x digest.Digest, _ *sync.Map) func() {
			lease, err := r.leases.Acquire(context.Background(), s3lease.FillName("docker.io/library/node", x), "replica-b", s3lease.MaxTTL)
			if err != nil {
				t.Fatal(err)
			}
			return func() {
				if err := lease.Release(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
		}, func(s Stats) int { return s.KeptLeased }},
		{"fill lease unreadable", func(t *testing.T, b *bucket, _ *replica, x digest.Digest, _ *sync.Map) func() {
			b.putObject(t, "leases/"+s3lease.BlobName(x), []byte("not a lease"))
			return func() {
				valid := []byte(`{"holder":"replica-b","expires":"2000-01-01T00:00:00Z","taken":"2000-01-01T00:00:00Z","token":"t"}`)
				b.putObject(t, "leases/"+s3lease.BlobName(x), valid)
			}
		}, func(s Stats) int { return s.KeptLeased }},
		{"accessed within the grace period", func(t *testing.T, b *bucket, r *replica, x digest.Digest, _ *sync.Map) func() {
			r.Touch(x)
			b.clock.Advance(9 * time.Minute)
			return func() { b.clock.Advance(time.Minute) }
		}, func(s Stats) int { return s.KeptRecent }},
		{"kept by the caller", func(t *testing.T, b *bucket, r *replica, x digest.Digest, keeping *sync.Map) func() {
			keeping.Store(x, true)
			return func() { keeping.Delete(x) }
		}, func(s Stats) int { return s.KeptByCaller }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := newBucket(t)
			var keeping sync.Map
			keep := func(d digest.Digest) bool { _, ok := keeping.Load(d); return ok }
			r := b.replica(t, "replica-a", Options{MaxSize: 1, Grace: 10 * time.Minute, Keep: keep})
			x := b.put(t, 100)
			b.put(t, 100)
			release := tt.keep(t, b, r, x, &keeping)

			stats := r.once(t)
			b.assertBlobs(t, x)
			if tt.kept(stats) != 1 || stats.Evicted != 1 || !stats.OverBudget {
				t.Errorf("stats %+v; want y evicted, x kept for its reason, over budget", stats)
			}

			release()
			stats = r.once(t)
			b.assertBlobs(t)
			if tt.kept(stats) != 0 || stats.Evicted != 1 || stats.OverBudget {
				t.Errorf("stats %+v; want x evicted once its reason is gone", stats)
			}
		})
	}
}

// Blobs uploaded within the grace period stay as if read then: a fill
// that has just finished is not undone.
func TestNewBlobsStay(t *testing.T) {
	t.Parallel()
	b := newBucket(t)
	b.clock.Set(time.Now())
	x := b.put(t, 100)
	stats := b.replica(t, "replica-a", Options{MaxSize: 1}).once(t)
	b.assertBlobs(t, x)
	if stats.KeptRecent != 1 || !stats.OverBudget {
		t.Errorf("stats %+v; want the new blob kept as recent", stats)
	}
}

// While another replica holds the janitor lease, a run evicts nothing
// and says who holds it; a run releases the lease when it is done.
func TestOneJanitorAtATime(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newBucket(t)
	x := b.put(t, 100)
	r := b.replica(t, "replica-a", Options{MaxSize: 1})
	lease, err := r.leases.Acquire(ctx, leaseName, "replica-b", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	stats := r.once(t)
	if stats.Ran || stats.HeldBy != "replica-b" || stats.Evicted != 0 {
		t.Fatalf("stats %+v; want no run, the lease held by replica-b", stats)
	}
	b.assertBlobs(t, x)

	if err := lease.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if stats := r.once(t); !stats.Ran || stats.Evicted != 1 {
		t.Fatalf("stats %+v; want a run that evicts x", stats)
	}
	if holder, _, held, err := r.leases.Held(ctx, leaseName); err != nil || held {
		t.Fatalf("after the run the janitor lease is held by %q (%v, %v); want it released", holder, held, err)
	}
}

// Replicas running the janitor at once evict each blob once between
// them, and together no more than the budget asks.
func TestConcurrentJanitors(t *testing.T) {
	t.Parallel()
	b := newBucket(t)
	for range 10 {
		b.put(t, 100)
	}
	const replicas = 4
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total Stats
	)
	for i := range replicas {
		r := b.replica(t, "replica-"+string(rune('a'+i)), Options{MaxSize: 500, LowWatermark: 1})
		wg.Go(func() {
			stats, err := r.Once(context.Background())
			if err != nil {
				t.Errorf("run: %v", err)
			}
			mu.Lock()
			defer mu.Unlock()
			total.Evicted += stats.Evicted
			total.Vanished += stats.Vanished
		})
	}
	wg.Wait()
	if left := len(b.blobs(t)); left != 5 || total.Evicted != 5 || total.Vanished != 0 {
		t.Fatalf("%d blobs left, %d evicted, %d found gone; want 5 left, 5 evicted once each", left, total.Evicted, total.Vanished)
	}
}

// A run whose bucket is down fails with an error, as does a flush, and
// the accesses recorded meanwhile wait for the next flush.
func TestBucketDown(t *testing.T) {
	t.Parallel()
	b := newBucket(t)
	r := b.replica(t, "replica-a", Options{MaxSize: 1})
	x := b.put(t, 100)
	b.srv.Stop()
	r.Touch(x)
	if stats, err := r.Once(context.Background()); err == nil || stats.Ran {
		t.Fatalf("run with the bucket down: %+v, %v; want an error", stats, err)
	} else {
		t.Log(err)
	}
	if err := r.Flush(context.Background()); err == nil {
		t.Fatal("flush with the bucket down succeeded")
	}
	if got := digests(r.pending); len(got) != 1 || got[0] != x {
		t.Fatalf("pending accesses after failed flushes: %v, want [%s]", got, x)
	}
}

// Run goes on through failures, reporting each run, and returns once its
// context is done.
func TestRunReportsFailuresAndStops(t *testing.T) {
	t.Parallel()
	b := newBucket(t)
	runs := make(chan error, 100)
	r := b.replica(t, "replica-a", Options{MaxSize: 1, Interval: time.Millisecond, FlushInterval: time.Millisecond,
		OnRun: func(_ Stats, err error) {
			select {
			case runs <- err:
			default:
			}
		}})
	b.srv.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	for range 3 {
		if err := <-runs; err == nil {
			t.Fatal("a run with the bucket down reported no error")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run returned %v, want nil once its context is done", err)
	}
}

// Run flushes what the replica touched, runs the janitor, and flushes
// once more when it stops.
func TestRunFlushesAndEvicts(t *testing.T) {
	t.Parallel()
	b := newBucket(t)
	runs := make(chan Stats, 100)
	r := b.replica(t, "replica-a", Options{MaxSize: 1, Interval: time.Millisecond, FlushInterval: time.Millisecond,
		OnRun: func(s Stats, err error) {
			if err != nil {
				t.Errorf("run: %v", err)
			}
			select {
			case runs <- s:
			default:
			}
		}})
	x, y := b.put(t, 100), b.put(t, 100)
	r.Touch(x)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	for s := range runs {
		if s.Evicted == 1 {
			break
		}
	}
	r.Touch(y)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	b.assertBlobs(t, x)
	if got := digests(r.record(t).Access); len(got) != 2 {
		t.Fatalf("the access object records %v, want both blobs", got)
	}
}

// Touch keeps at most MaxPending accesses in memory, and the run reports
// those it dropped.
func TestTouchIsBounded(t *testing.T) {
	t.Parallel()
	b := newBucket(t)
	r := b.replica(t, "replica-a", Options{MaxSize: 1 << 30, MaxPending: 2})
	ds := []digest.Digest{digest.FromString("1"), digest.FromString("2"), digest.FromString("3")}
	for _, d := range ds {
		r.Touch(d)
	}
	r.Touch(ds[0]) // already pending: not dropped
	r.Touch("sha256:not-a-digest")
	if len(r.pending) != 2 {
		t.Fatalf("%d accesses pending, want 2", len(r.pending))
	}
	select {
	case <-r.flushNow:
	default:
		t.Fatal("a full batch did not ask for a flush")
	}
	if stats := r.once(t); stats.DroppedTouches != 1 {
		t.Fatalf("stats %+v; want one dropped touch", stats)
	}
	if got := digests(r.record(t).Access); len(got) != 2 {
		t.Fatalf("the access object records %v, want the two kept", got)
	}
}

// New refuses options that cannot work.
func TestNewRefusesBadOptions(t *testing.T) {
	t.Parallel()
	b := newBucket(t)
	r := b.replica(t, "replica-a", Options{MaxSize: 1})
	tests := []struct {
		name string
		opts Options
	}{
		{"no replica", Options{MaxSize: 1}},
		{"no budget", Options{ReplicaID: "a"}},
		{"negative budget", Options{ReplicaID: "a", MaxSize: -1}},
		{"watermark above one", Options{ReplicaID: "a", MaxSize: 1, LowWatermark: 1.5}},
		{"grace within the flush interval", Options{ReplicaID: "a", MaxSize: 1, Grace: time.Minute, FlushInterval: time.Minute}},
		{"negative interval", Options{ReplicaID: "a", MaxSize: 1, Interval: -time.Second}},
		{"access objects too large to read", Options{ReplicaID: "a", MaxSize: 1, MaxEntries: 1000, MaxAccessObjectSize: 1000}},
	}
	for _, tt := range tests {
		if _, err := New(r.client, b.store, r.leases, tt.opts); err == nil {
			t.Errorf("%s: New succeeded", tt.name)
		}
	}
	if _, err := New(nil, b.store, r.leases, Options{ReplicaID: "a", MaxSize: 1}); err == nil {
		t.Error("New without a client succeeded")
	}
}

// A run that loses the janitor lease (it expired, and another replica
// took it over) stops before its next removal, with ErrLost.
func TestLostLeaseStopsTheRun(t *testing.T) {
	t.Parallel()
	b := newBucket(t)
	other := b.replica(t, "replica-b", Options{MaxSize: 1})
	tookOver := false
	keep := func(digest.Digest) bool {
		if !tookOver {
			tookOver = true
			b.clock.Advance(2 * time.Minute)
			if _, err := other.leases.Acquire(context.Background(), leaseName, "replica-b", time.Minute); err != nil {
				t.Errorf("replica-b takes the expired janitor lease over: %v", err)
			}
		}
		return true
	}
	r := b.replica(t, "replica-a", Options{MaxSize: 1, LeaseTTL: time.Minute, Keep: keep})
	x, y, z := b.put(t, 300), b.put(t, 200), b.put(t, 100)
	stats, err := r.Once(context.Background())
	if !errors.Is(err, s3lease.ErrLost) || stats.Evicted != 0 || stats.KeptByCaller != 1 {
		t.Fatalf("run that lost its lease: %+v, %v; want ErrLost after the first blob, nothing evicted", stats, err)
	}
	b.assertBlobs(t, x, y, z)
	if holder, _, held, err := r.leases.Held(context.Background(), leaseName); err != nil || !held || holder != "replica-b" {
		t.Fatalf("the janitor lease is held by %q (%v, %v); want replica-b to keep it", holder, held, err)
	}
}
