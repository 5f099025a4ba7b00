package s3janitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/regmirror/regmirror/cache/s3blobs"
	"github.com/regmirror/regmirror/cache/s3lease"
)

// Options configure a Janitor. ReplicaID and MaxSize are required; the
// zero value of every other field is its default.
type Options struct {
	// ReplicaID names this replica: the holder of the janitor lease and
	// the name of its access object. Every replica sharing the bucket
	// needs its own (a host or pod name).
	ReplicaID string
	// MaxSize is the budget of the blobs in the bucket, in bytes
	// (storage.s3.max_size).
	MaxSize int64
	// LowWatermark is the fraction of MaxSize that a run evicts down to
	// once the blobs exceed MaxSize, so that each run frees room for a
	// while rather than a blob at a time; zero is 0.9.
	LowWatermark float64
	// Interval is how often Run runs the janitor; zero is 5 minutes.
	Interval time.Duration
	// FlushInterval is how often Run writes this replica's accesses to
	// its access object; zero is a minute.
	FlushInterval time.Duration
	// Grace is how long after its last access, or its upload, a blob is
	// never evicted: it covers reads in flight and the accesses other
	// replicas have yet to flush, so it must exceed FlushInterval plus
	// the clocks' skew; zero is 10 minutes.
	Grace time.Duration
	// LeaseTTL is the TTL of the janitor lease, renewed every third of
	// it while a run works; zero is 2 minutes.
	LeaseTTL time.Duration
	// MaxClockSkew is how far ahead of this replica's clock another
	// replica's may run: an access up to this far in the future counts
	// as now, one further is ignored. Zero is a minute.
	MaxClockSkew time.Duration
	// Keep, when set, reports blobs that must stay whatever their
	// access time (hosted or pinned content). It is called during a run
	// only for blobs that would otherwise go.
	Keep func(digest.Digest) bool
	// MaxPending bounds the accesses waiting for a flush; zero is
	// 100000.
	MaxPending int
	// MaxEntries bounds the accesses in this replica's access object,
	// the most recent kept; zero is 200000 (some 17 MB of JSON).
	MaxEntries int
	// MaxAccessObjectSize is the largest access object read, in bytes;
	// larger ones are ignored. Zero is 64 MiB.
	MaxAccessObjectSize int64
	// OnRun, when set, is called by Run after each run with what it did
	// and its error.
	OnRun func(Stats, error)
	// Registerer, when set, gets the janitor's Prometheus collectors;
	// every run, of Run or Once, counts in them.
	Registerer prometheus.Registerer
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// Logger is told of runs, failures and ignored access objects; nil
	// discards.
	Logger *slog.Logger
}

// withDefaults fills in the zero fields and checks the others.
func (o Options) withDefaults() (Options, error) {
	o.LowWatermark = cmpOr(o.LowWatermark, 0.9)
	o.Interval = cmpOr(o.Interval, 5*time.Minute)
	o.FlushInterval = cmpOr(o.FlushInterval, time.Minute)
	o.Grace = cmpOr(o.Grace, 10*time.Minute)
	o.LeaseTTL = cmpOr(o.LeaseTTL, 2*time.Minute)
	o.MaxClockSkew = cmpOr(o.MaxClockSkew, time.Minute)
	o.MaxPending = cmpOr(o.MaxPending, 100_000)
	o.MaxEntries = cmpOr(o.MaxEntries, 200_000)
	o.MaxAccessObjectSize = cmpOr(o.MaxAccessObjectSize, 64<<20)
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case o.ReplicaID == "":
		return o, errors.New("no replica ID")
	case o.MaxSize <= 0:
		return o, fmt.Errorf("the budget %d is not positive", o.MaxSize)
	case o.LowWatermark <= 0 || o.LowWatermark > 1:
		return o, fmt.Errorf("the low watermark %v is not in (0, 1]", o.LowWatermark)
	case o.Grace <= o.FlushInterval:
		return o, fmt.Errorf("the grace period %v does not exceed the flush interval %v: other replicas' reads could go unseen",
			o.Grace, o.FlushInterval)
	case int64(o.MaxEntries)*maxEntrySize > o.MaxAccessObjectSize:
		return o, fmt.Errorf("%d accesses could make an access object larger than the %d bytes read of one",
			o.MaxEntries, o.MaxAccessObjectSize)
	case o.Interval < 0 || o.FlushInterval < 0 || o.LeaseTTL < 0 || o.MaxClockSkew < 0 || o.MaxPending < 0 ||
		o.MaxEntries < 0 || o.MaxAccessObjectSize < 0:
		return o, errors.New("a negative interval or limit")
	}
	return o, nil
}

// maxEntrySize bounds the JSON of one access in an access object: a
// SHA-512 digest, quoted, and a time in Unix seconds.
const maxEntrySize = 160

func cmpOr[T int | int64 | float64 | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// Janitor keeps the blobs of one bucket within a budget, with the other
// replicas sharing it. Its methods are safe for concurrent use. Make one
// with New.
type Janitor struct {
	client  *minio.Client
	blobs   *s3blobs.Store
	leases  *s3lease.Leases
	opts    Options
	log     *slog.Logger
	metrics *metrics
	ownKey  string
	// flushNow hurries Run's next flush when the pending accesses are
	// at their bound.
	flushNow chan struct{}

	touchMu sync.Mutex
	// pending are the accesses since the last flush, in Unix seconds.
	pending        map[digest.Digest]int64
	droppedTouches int64

	flushMu sync.Mutex
	// own is this replica's access record, nil until read from the
	// bucket.
	own map[digest.Digest]int64
	// ownChanged is set while own holds what the bucket does not.
	ownChanged bool
	// dropped counts the touches dropped since the last run's Stats.
	dropped int64

	// runMu makes one run at a time in this process; the lease makes
	// one at a time among the replicas.
	runMu sync.Mutex
}

// New returns a janitor of the blobs in blobs' bucket, which reaches the
// bucket with client (made by s3blobs.NewClient from the blob store's
// options) and takes its lease from leases (under the same prefix as the
// blobs). It does not reach the server.
func New(client *minio.Client, blobs *s3blobs.Store, leases *s3lease.Leases, opts Options) (*Janitor, error) {
	if client == nil || blobs == nil || leases == nil {
		return nil, errors.New("s3janitor: a janitor needs a client, a blob store and leases")
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("s3janitor: %w", err)
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("s3janitor: %w", err)
	}
	m.budget.Set(float64(opts.MaxSize))
	j := &Janitor{client: client, blobs: blobs, leases: leases, opts: opts, log: opts.Logger, metrics: m,
		flushNow: make(chan struct{}, 1), pending: make(map[digest.Digest]int64)}
	j.ownKey = accessKey(j.accessDir(), opts.ReplicaID)
	return j, nil
}

// Run flushes this replica's accesses every FlushInterval and runs the
// janitor every Interval, until ctx is done; then it flushes once more
// and returns nil. Each run is logged and handed to OnRun; after a
// failure (the bucket down, the lease lost) the next tick tries again.
func (j *Janitor) Run(ctx context.Context) error {
	flushTick := time.NewTicker(j.opts.FlushInterval)
	defer flushTick.Stop()
	runTick := time.NewTicker(j.opts.Interval)
	defer runTick.Stop()
	for {
		select {
		case <-ctx.Done():
			j.finalFlush(ctx)
			return nil
		case <-flushTick.C:
			j.flushLogged(ctx)
		case <-j.flushNow:
			j.flushLogged(ctx)
		case <-runTick.C:
			stats, err := j.Once(ctx)
			if ctx.Err() != nil {
				continue // stopping: a run cut short is no failure
			}
			j.report(stats, err)
		}
	}
}

// finalFlushTimeout bounds the flush at shutdown.
const finalFlushTimeout = 10 * time.Second

// finalFlush writes the last accesses when Run stops, so that a replica
// going away leaves what it served recorded.
func (j *Janitor) finalFlush(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalFlushTimeout)
	defer cancel()
	j.flushLogged(ctx)
}

func (j *Janitor) flushLogged(ctx context.Context) {
	if err := j.Flush(ctx); err != nil {
		j.log.Warn("s3janitor: cannot write this replica's accesses; they wait for the next flush", "err", err)
	}
}

// report logs a run and hands it to OnRun.
func (j *Janitor) report(stats Stats, err error) {
	switch {
	case err != nil:
		j.log.Error("s3janitor: run failed; the next one tries again", "err", err)
	case !stats.Ran:
		j.log.Debug("s3janitor: another replica runs the janitor", "holder", stats.HeldBy)
	default:
		j.log.Info("s3janitor: run", stats.logAttrs()...)
	}
	if j.opts.OnRun != nil {
		j.opts.OnRun(stats, err)
	}
}

func (j *Janitor) now() time.Time { return j.opts.Now() }

// location names an object for errors and logs: s3://bucket/key.
func (j *Janitor) location(key string) string { return "s3://" + j.blobs.Bucket() + "/" + key }
