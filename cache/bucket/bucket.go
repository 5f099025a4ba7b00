package bucket

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/regmirror/regmirror/cache/s3blobs"
	"github.com/regmirror/regmirror/cache/s3janitor"
	"github.com/regmirror/regmirror/cache/s3lease"
)

// DefaultLeaseTTL is how long a fill lease lasts unless its holder renews
// it: how long the other replicas wait for a blob whose holder died
// before one of them takes over.
const DefaultLeaseTTL = 30 * time.Second

// lookupTimeout bounds the requests a miss waits on to learn whether the
// bucket holds a blob or a manifest, or who fills it: each should take
// milliseconds, and a bucket that accepts connections without answering
// (a partition, a stuck load balancer) must turn a miss into a 503 in
// seconds, as one that refuses them does, not after the HTTP client's
// minute-long waits for each try.
const lookupTimeout = 10 * time.Second

// Options configure a Bucket.
type Options struct {
	// Blobs say where the bucket is and how to reach it.
	Blobs s3blobs.Options
	// Holder names this replica in the leases it takes: its URL as its
	// peers reach it, so that a replica finding a lease held knows whom
	// to read the blob from. Required.
	Holder string
	// LeaseTTL is DefaultLeaseTTL when zero.
	LeaseTTL time.Duration
	// Logger is told of leases lost and not released; nil discards.
	Logger *slog.Logger
	// Registerer receives the bucket's metrics; nil registers none.
	Registerer prometheus.Registerer
}

// Bucket is the bucket shared by the replicas. It is safe for concurrent
// use.
type Bucket struct {
	client  *minio.Client
	blobs   *s3blobs.Store
	links   links
	leases  *s3lease.Leases
	holder  string
	ttl     time.Duration
	log     *slog.Logger
	metrics *metrics
	touch   func(digest.Digest)

	// claimed counts, by blob, this replica's downloads that hold its
	// fill lease: those fetch it from the upstream, and only those copy
	// it to the bucket (see Share).
	claimedMu sync.Mutex
	claimed   map[digest.Digest]int
}

// New connects to the bucket and checks that it may read and write there
// (see s3blobs.New).
func New(ctx context.Context, opts Options) (*Bucket, error) {
	if opts.Holder == "" {
		return nil, errors.New("bucket: no holder name for the leases")
	}
	b := &Bucket{holder: opts.Holder, ttl: opts.LeaseTTL, log: opts.Logger, touch: func(digest.Digest) {},
		claimed: make(map[digest.Digest]int)}
	if b.ttl <= 0 {
		b.ttl = DefaultLeaseTTL
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	var err error
	if b.metrics, err = newMetrics(opts.Registerer); err != nil {
		return nil, err
	}
	if b.blobs, err = s3blobs.New(ctx, opts.Blobs); err != nil {
		return nil, err
	}
	client, err := s3blobs.NewClient(opts.Blobs)
	if err != nil {
		return nil, err
	}
	b.client = client
	b.links = links{client: client, bucket: opts.Blobs.Bucket, prefix: normalPrefix(opts.Blobs.Prefix)}
	b.leases, err = s3lease.New(client, s3lease.Options{Bucket: opts.Blobs.Bucket, Prefix: opts.Blobs.Prefix})
	if err != nil {
		return nil, err
	}
	return b, nil
}

// Blobs is the blob store in the bucket.
func (b *Bucket) Blobs() *s3blobs.Store { return b.blobs }

// Leases are the leases in the bucket.
func (b *Bucket) Leases() *s3lease.Leases { return b.leases }

// NewJanitor makes the janitor that keeps the bucket's blobs within
// opts.MaxSize, and has every blob this replica reads or shares touched
// in it. Call it before the bucket is used.
func (b *Bucket) NewJanitor(opts s3janitor.Options) (*s3janitor.Janitor, error) {
	j, err := s3janitor.New(b.client, b.blobs, b.leases, opts)
	if err != nil {
		return nil, err
	}
	b.touch = j.Touch
	return j, nil
}

// Touch tells that blob d was just read, from the bucket or from a
// replica's local copy of it.
func (b *Bucket) Touch(d digest.Digest) { b.touch(d) }

// OpenBlob reads blob d from offset for repository repo (a cache key,
// "<host>/<path>"), and returns its size. It fails with an error wrapping
// fs.ErrNotExist when the bucket does not have d, or has it only for
// other repositories: a blob is read from the bucket for a repository
// whose upstream sent it to one of the replicas, never for one whose
// upstream was not asked, which may not have it (see links). Any other
// error means the bucket did not answer as it should.
func (b *Bucket) OpenBlob(ctx context.Context, repo string, d digest.Digest, offset int64) (io.ReadCloser, int64, error) {
	// The file's reads run under no context of the caller's: the timeout
	// bounds the lookups only.
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	if err := b.links.check(ctx, repo, d); err != nil {
		b.metrics.read(err)
		return nil, 0, err
	}
	f, err := b.blobs.Open(ctx, d)
	if err != nil {
		b.metrics.read(err)
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err == nil && (offset < 0 || offset > fi.Size()) {
		err = fmt.Errorf("bucket: read blob %s at %d: beyond its %d bytes", d, offset, fi.Size())
	}
	if err == nil {
		_, err = f.Seek(offset, io.SeekStart)
	}
	if err != nil {
		f.Close()
		b.metrics.read(err)
		return nil, 0, err
	}
	b.metrics.read(nil)
	b.touch(d)
	if offset == 0 {
		return b.verifying(f, d), fi.Size(), nil
	}
	return f, fi.Size(), nil
}

// Share uploads the verified size bytes of r as blob d, unless the bucket
// has it, then links it to repo. It implements cache.SharedBlobs. Only a
// download that held d's fill lease uploads: it fetched d from the
// upstream. A download that read d from the bucket, from its owner or
// from the lease's holder only adds its repository's link, since the
// replica that fetched d uploads it: replicas that each kept a copy would
// otherwise each upload the blob, finding it not there yet.
func (b *Bucket) Share(ctx context.Context, repo string, d digest.Digest, r io.Reader, size int64) error {
	if b.claims(d) {
		uploaded, err := b.blobs.Put(ctx, d, r, size)
		if err != nil {
			return err
		}
		if uploaded {
			b.metrics.uploadedBlobs.Inc()
			b.metrics.uploadedBytes.Add(float64(size))
		}
	}
	b.touch(d)
	return b.links.add(ctx, repo, d)
}

// claims reports whether a download of this replica holds d's fill lease.
func (b *Bucket) claims(d digest.Digest) bool {
	b.claimedMu.Lock()
	defer b.claimedMu.Unlock()
	return b.claimed[d] > 0
}

// noteClaim counts a download holding d's fill lease, for as long as ctx
// lasts.
func (b *Bucket) noteClaim(ctx context.Context, d digest.Digest) {
	b.claimedMu.Lock()
	b.claimed[d]++
	b.claimedMu.Unlock()
	context.AfterFunc(ctx, func() {
		b.claimedMu.Lock()
		defer b.claimedMu.Unlock()
		if b.claimed[d]--; b.claimed[d] <= 0 {
			delete(b.claimed, d)
		}
	})
}

// Holder is this replica's name in the leases it takes.
func (b *Bucket) Holder() string { return b.holder }

func normalPrefix(p string) string {
	if p == "" || strings.HasSuffix(p, "/") {
		return p
	}
	return p + "/"
}
