package s3janitor

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// Access objects that are not records, too large, or of another version
// are ignored with a warning, as are accesses of invalid digests and
// accesses far in the future; none of them has a blob evicted that the
// valid records keep, and a replica whose clock runs a little ahead is
// believed.
func TestHostileAccessObjects(t *testing.T) {
	t.Parallel()
	b := newBucket(t)
	r := b.replica(t, "replica-a", Options{MaxSize: 1, MaxEntries: 10, MaxAccessObjectSize: 4 << 10, MaxClockSkew: time.Minute})
	future, recent, ahead, old := b.put(t, 100), b.put(t, 100), b.put(t, 100), b.put(t, 100)
	now := b.clock.Now()

	b.putObject(t, "access/garbage.json", []byte("{not json"))
	b.putObject(t, "access/array.json", []byte(`[1, 2, 3]`))
	b.putObject(t, "access/huge.json", []byte(`{"version":1,"access":{}}`+strings.Repeat(" ", 5<<10)))
	b.putRecord(t, "v2", accessRecord{Version: 2, Access: map[digest.Digest]int64{old: now.Unix()}})
	b.putRecord(t, "hostile", accessRecord{Version: 1, Replica: "hostile", Written: now, Access: map[digest.Digest]int64{
		future:                 now.Add(100 * 365 * 24 * time.Hour).Unix(),
		"sha256:short":         now.Unix(),
		"not a digest":         now.Unix(),
		old:                    -1,
		digest.FromString("x"): now.Unix(), // a blob not in the bucket
	}})
	b.putRecord(t, "replica-b", accessRecord{Version: 1, Replica: "replica-b", Written: now, Access: map[digest.Digest]int64{
		recent: now.Add(-time.Minute).Unix(),
		ahead:  now.Add(30 * time.Second).Unix(),
	}})

	stats := r.once(t)
	b.assertBlobs(t, recent, ahead)
	if stats.BadAccessObjects != 4 || stats.AccessObjects != 2 || stats.Evicted != 2 || stats.KeptRecent != 2 {
		t.Errorf("stats %+v; want 4 bad access objects ignored, 2 read, the future and old blobs evicted, 2 kept as recent",
			stats)
	}
}

// A replica's own access object that is not a record is replaced at its
// first flush; one that is, is kept and added to.
func TestOwnAccessObject(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newBucket(t)
	x, y := digest.FromString("x"), digest.FromString("y")
	b.putObject(t, "access/replica-a.json", []byte("garbage"))
	r := b.replica(t, "replica-a", Options{MaxSize: 1})
	r.Touch(x)
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := digests(r.record(t).Access); len(got) != 1 || got[0] != x {
		t.Fatalf("the replaced access object records %v, want [%s]", got, x)
	}

	// A restarted replica keeps what it recorded.
	restarted := b.replica(t, "replica-a", Options{MaxSize: 1})
	restarted.Touch(y)
	if err := restarted.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	rec := restarted.record(t)
	if got := digests(rec.Access); len(got) != 2 || rec.Replica != "replica-a" {
		t.Fatalf("after a restart the access object of %s records %v, want both blobs", rec.Replica, got)
	}
}

// The access object keeps the MaxEntries most recent accesses.
func TestAccessObjectIsBounded(t *testing.T) {
	t.Parallel()
	b := newBucket(t)
	r := b.replica(t, "replica-a", Options{MaxSize: 1, MaxEntries: 2})
	ds := []digest.Digest{digest.FromString("1"), digest.FromString("2"), digest.FromString("3")}
	for _, d := range ds {
		r.Touch(d)
		b.clock.Advance(time.Second)
	}
	if err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	rec := r.record(t)
	if len(rec.Access) != 2 || rec.Access[ds[0]] != 0 {
		t.Fatalf("the access object records %v, want the last two of %v", rec.Access, ds)
	}
}

// A replica's ID becomes a key of its own: kept when it is safe, and
// otherwise made safe with a hash of the ID, so that IDs never share one.
func TestAccessKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		id, want string
	}{
		{"replica-a", "access/replica-a.json"},
		{"node_1.example", "access/node_1.example.json"},
		{"10.0.0.1:5000", "access/10.0.0.1_5000-"},
		{"pod/a", "access/pod_a-"},
		{"..", "access/..-"},
		{"../../blobs/x", "access/.._.._blobs_x-"},
		{strings.Repeat("r", 100), "access/" + strings.Repeat("r", 64) + "-"},
	}
	seen := map[string]string{}
	for _, tt := range tests {
		got := accessKey("access/", tt.id)
		if !strings.HasPrefix(got, tt.want) || !strings.HasSuffix(got, ".json") || strings.Count(got, "/") != 1 {
			t.Errorf("accessKey(%q) = %q, want %s...", tt.id, got, tt.want)
		}
		if other, ok := seen[got]; ok {
			t.Errorf("%q and %q share the key %s", tt.id, other, got)
		}
		seen[got] = tt.id
	}
	if accessKey("access/", "pod/a") == accessKey("access/", "pod_a") {
		t.Error("pod/a and pod_a share a key")
	}
}

// A replica that touched nothing since its last flush writes nothing.
func TestIdleFlushWritesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newBucket(t)
	r := b.replica(t, "replica-a", Options{MaxSize: 1})
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := r.readRecord(ctx, r.ownKey, r.opts.MaxAccessObjectSize); !isNotFound(err) {
		t.Fatalf("an idle replica's access object: %v, want none", err)
	}
	r.Touch(digest.FromString("x"))
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	b.putObject(t, "access/replica-a.json", []byte("overwritten"))
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := r.readRecord(ctx, r.ownKey, r.opts.MaxAccessObjectSize); !errors.Is(err, errNotARecord) {
		t.Fatalf("the access object after an idle flush: %v, want it left as it was", err)
	}
}
