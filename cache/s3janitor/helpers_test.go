package s3janitor

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/cache/blobstore"
	"github.com/regmirror/regmirror/cache/s3blobs"
	"github.com/regmirror/regmirror/cache/s3lease"
	"github.com/regmirror/regmirror/cache/storagetest"
	"github.com/regmirror/regmirror/internal/s3test"
	"github.com/regmirror/regmirror/internal/testclock"
)

// prefix is the key prefix the tests' replicas share.
const prefix = "regmirror/"

// bucket is one bucket on a real S3 server, shared by the replicas of a
// test, whose clocks are one test clock.
type bucket struct {
	srv   *s3test.Server
	opts  s3blobs.Options
	store *s3blobs.Store
	clock *testclock.Clock
}

// newBucket starts a server with a bucket. The clock starts an hour
// after the server's, so that every blob uploaded is older than any
// grace period until a replica touches it.
func newBucket(t *testing.T) *bucket {
	t.Helper()
	srv := s3test.Start(t)
	opts := s3blobs.Options{Endpoint: srv.Endpoint, DisableTLS: true, Region: s3test.Region, Bucket: srv.NewBucket(t),
		Prefix: prefix, AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey, SpoolDir: t.TempDir(), MaxRetries: 1}
	store, err := s3blobs.New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return &bucket{srv: srv, opts: opts, store: store, clock: testclock.New(time.Now().Add(time.Hour))}
}

// replica is one replica's view of the bucket: its client, leases and
// janitor.
type replica struct {
	*Janitor
	client *minio.Client
	leases *s3lease.Leases
}

// replica makes a janitor of the bucket for the replica id, on the
// bucket's clock; opts.ReplicaID and opts.Now are set for it.
func (b *bucket) replica(t *testing.T, id string, opts Options) *replica {
	t.Helper()
	client, err := s3blobs.NewClient(b.opts)
	if err != nil {
		t.Fatal(err)
	}
	leases, err := s3lease.New(client, s3lease.Options{Bucket: b.opts.Bucket, Prefix: prefix, Now: b.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	opts.ReplicaID, opts.Now = id, b.clock.Now
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	j, err := New(client, b.store, leases, opts)
	if err != nil {
		t.Fatal(err)
	}
	return &replica{Janitor: j, client: client, leases: leases}
}

// put uploads a random blob of size bytes.
func (b *bucket) put(t *testing.T, size int) digest.Digest {
	t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	d := digest.FromBytes(data)
	storagetest.Put(t, b.store, d, data)
	return d
}

// putObject writes body at key, under the prefix.
func (b *bucket) putObject(t *testing.T, key string, body []byte) {
	t.Helper()
	if _, err := b.srv.Client(t).PutObject(context.Background(), b.opts.Bucket, prefix+key, bytes.NewReader(body),
		int64(len(body)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
}

// putRecord writes an access record at access/<name>.json.
func (b *bucket) putRecord(t *testing.T, name string, rec accessRecord) {
	t.Helper()
	data, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	b.putObject(t, "access/"+name+".json", data)
}

// blobs lists the digests in the bucket, sorted.
func (b *bucket) blobs(t *testing.T) []digest.Digest {
	t.Helper()
	var got []digest.Digest
	if err := b.store.WalkInfo(context.Background(), func(d digest.Digest, _ blobstore.Info) error {
		got = append(got, d)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	return got
}

// assertBlobs checks that the bucket holds exactly want.
func (b *bucket) assertBlobs(t *testing.T, want ...digest.Digest) {
	t.Helper()
	want = slices.Sorted(slices.Values(want))
	if got := b.blobs(t); !slices.Equal(got, want) {
		t.Fatalf("the bucket holds %v, want %v", got, want)
	}
}

// once runs the janitor of r and fails the test on an error.
func (r *replica) once(t *testing.T) Stats {
	t.Helper()
	stats, err := r.Once(context.Background())
	if err != nil {
		t.Fatalf("%s: run: %v", r.opts.ReplicaID, err)
	}
	t.Logf("%s: %+v", r.opts.ReplicaID, stats)
	return stats
}

// record reads the access object of r.
func (r *replica) record(t *testing.T) accessRecord {
	t.Helper()
	rec, err := r.readRecord(context.Background(), r.ownKey, r.opts.MaxAccessObjectSize)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// digests are the keys of m, sorted.
func digests[V any](m map[digest.Digest]V) []digest.Digest { return slices.Sorted(maps.Keys(m)) }
