package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/regmirror/regmirror/cache/blobstore"
	"github.com/regmirror/regmirror/cache/index"
	"github.com/regmirror/regmirror/internal/fill"
)

// Defaults for the zero values of Options.
const (
	DefaultStallTimeout        = 2 * time.Minute
	DefaultAccessFlushInterval = 10 * time.Second
	DefaultGCInterval          = 5 * time.Minute
)

// Options configure a Store. The zero value of every field means its default.
type Options struct {
	// Dir is the data directory. Required.
	Dir string
	// Logger receives warnings about self-healed damage and Badger's own
	// warnings. Default: discard.
	Logger *slog.Logger
	// Registerer receives the cache's metrics. Default: none.
	Registerer prometheus.Registerer
	// Now is the clock stamped on index rows. Default: time.Now.
	Now func() time.Time
	// StallTimeout aborts a download when no byte arrives for this long.
	// Default: DefaultStallTimeout.
	StallTimeout time.Duration
	// AccessFlushInterval is how often Run writes batched access times.
	// Default: DefaultAccessFlushInterval.
	AccessFlushInterval time.Duration
	// GCInterval is how often Run compacts the index's value log.
	// Default: DefaultGCInterval.
	GCInterval time.Duration
	// Retry is how a download resumes after an upstream failure.
	Retry Retry
	// Limits bound each download; SetLimits changes them later.
	Limits
	// Shared, when set, is a blob store the replicas of a cluster share:
	// each blob this cache downloads and keeps is copied there once it is
	// verified, before the download ends (see shareDownload).
	Shared SharedBlobs

	// wrapIndex, when set, wraps the index as it is opened: tests count
	// its reads with it.
	wrapIndex func(index.DB) index.DB
}

// Store is the on-disk cache. Its methods are safe for concurrent use.
// A data directory is used by one Store at a time.
type Store struct {
	dataDir  string // <dir>: index/, the index's tables stamp, blobs/, tmp/
	blobRoot string // <dir>/blobs
	tmpDir   string // <dir>/tmp: downloads in progress, on the blobs' filesystem
	// blobs keeps the blob bytes: the files under blobRoot and tmpDir.
	blobs blobstore.Interface
	// db keeps the index rows (see index.go for their keys).
	db      index.DB
	unlock  func() error
	log     *slog.Logger
	now     func() time.Time
	metrics *metrics

	stallTimeout        time.Duration
	retry               Retry
	accessFlushInterval time.Duration
	gcInterval          time.Duration

	access accessBatch
	// skipAccess turns access tracking off; only benchmarks set it, to
	// measure what tracking costs the read path.
	skipAccess bool

	verified verifiedSet  // blobs whose content this process has hashed
	uses     useTable     // open readers, and blobs being removed
	usage    atomic.Int64 // bytes of the indexed blobs
	// indexUsage is what the manifests and tags count against the budget
	// (see manifestCost and tagCost).
	indexUsage atomic.Int64
	reserved   atomic.Int64 // announced bytes of the downloads in flight
	// strayFiles counts the files the blob store's walk removed from the
	// tree as no blob's, for the sweep's report.
	strayFiles atomic.Int64
	limits     atomic.Pointer[Limits]
	grew       chan struct{}

	fills sync.WaitGroup // download goroutines

	// counted is closed once the index's rows at Open are counted into the
	// usage (see countInBackground); stopCount cancels the count, counting
	// waits for it.
	counted   chan struct{}
	stopCount context.CancelFunc
	counting  sync.WaitGroup

	// blobsIndexed counts the writes that may add a blob row to the index,
	// each counted before its row can be seen, so that a download started
	// after a LookupBlob that found no row needs no second look unless a
	// row may have been added since (see joinFill). blobsIndexing counts
	// those still running: a lookup that reads while one runs may miss a
	// row that commits right after its read, though the write was counted
	// before it, so it knows nothing of the blob's absence (see
	// lookupAbsence).
	blobsIndexed  atomic.Uint64
	blobsIndexing atomic.Int64

	// downloads are the blob downloads in flight, by digest and
	// repository: the one fill mechanism of internal/fill, as the mirror's
	// manifest fills. Its lock also guards closed and each download's
	// readers, repos and abandoned.
	downloads fill.Group[fillKey, *download]
	closed    bool

	shared SharedBlobs // nil: no shared store

	closeOnce sync.Once
	closeErr  error
}

// Open opens, or creates, the cache in opts.Dir. It fails with an error
// wrapping ErrLocked when another process uses the directory. Leftovers of
// downloads interrupted by a crash are removed. Open does not look at the
// blob files, so that it takes no longer for a million blobs than for ten:
// Run reconciles the index with them in the background (see Reconcile),
// and every read checks its file first (see openFile).
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, errors.New("open cache: no data directory")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s := newStore(opts)
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	if err := makePrivateDir(opts.Dir); err != nil {
		return nil, fmt.Errorf("open cache: %w", err)
	}
	if s.unlock, err = lockDir(opts.Dir); err != nil {
		return nil, err
	}
	if err := s.prepareDirs(); err != nil {
		s.unlock()
		return nil, err
	}
	if s.db, err = openIndex(ctx, opts.Dir, s.log, opts.wrapIndex); err != nil {
		s.unlock()
		return nil, err
	}
	s.countInBackground()
	return s, nil
}

func newStore(opts Options) *Store {
	s := &Store{
		dataDir:             opts.Dir,
		blobRoot:            filepath.Join(opts.Dir, "blobs"),
		tmpDir:              filepath.Join(opts.Dir, "tmp"),
		log:                 opts.Logger,
		now:                 opts.Now,
		stallTimeout:        opts.StallTimeout,
		retry:               opts.Retry.withDefaults(),
		accessFlushInterval: opts.AccessFlushInterval,
		gcInterval:          opts.GCInterval,
		grew:                make(chan struct{}, 1),
		counted:             make(chan struct{}),
		stopCount:           func() {},
		shared:              opts.Shared,
	}
	s.SetLimits(opts.Limits)
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.stallTimeout <= 0 {
		s.stallTimeout = DefaultStallTimeout
	}
	if s.accessFlushInterval <= 0 {
		s.accessFlushInterval = DefaultAccessFlushInterval
	}
	if s.gcInterval <= 0 {
		s.gcInterval = DefaultGCInterval
	}
	return s
}

// prepareDirs creates the blob tree and an empty temp directory (see
// newFileBlobs): anything in tmp is a download that a crash interrupted,
// never indexed.
func (s *Store) prepareDirs() error {
	blobs, err := newFileBlobs(s.blobRoot, s.tmpDir, func(path string) {
		s.log.Warn("removing a stray file from the blob tree", "path", path)
		s.strayFiles.Add(1)
	})
	if err != nil {
		return fmt.Errorf("open cache: %w", err)
	}
	s.blobs = blobs
	return nil
}

// Modes of what the store creates. Cached content may come from private
// upstream repositories and pushed content from private teams: only the
// daemon's user may read it.
const (
	dirMode  = 0o700
	fileMode = 0o600
)

// makePrivateDir creates dir, or takes away the group and other permissions
// of an existing one, which a data directory made by an earlier version has.
// A private data directory protects everything below it, however loose the
// modes of older files in it are.
func makePrivateDir(dir string) error {
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return err
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&^dirMode == 0 {
		return nil
	}
	if err := os.Chmod(dir, fi.Mode().Perm()&dirMode); err != nil {
		return fmt.Errorf("make %s private: %w", dir, err)
	}
	return nil
}

// countInBackground counts what the index holds at Open into the usage and
// the gauges, from a snapshot taken now, while the Store already serves:
// scanning a million rows takes a second. Changes after the snapshot add to
// or take from the counters themselves, so snapshot plus changes is exact.
// Usage waits for the count.
func (s *Store) countInBackground() {
	ctx, cancel := context.WithCancel(context.Background())
	s.stopCount = cancel
	taken := make(chan struct{})
	s.counting.Add(1)
	go func() {
		defer s.counting.Done()
		defer close(s.counted)
		s.countIndex(ctx, sync.OnceFunc(func() { close(taken) }))
	}()
	<-taken // the snapshot predates every change this Store makes
}

// countIndex adds the rows of a snapshot of the index to the usage and the
// gauges, calling taken once the snapshot is taken, or could not be.
func (s *Store) countIndex(ctx context.Context, taken func()) {
	defer taken()
	var st Stats
	err := s.db.View(ctx, func(txn index.Reader) error {
		taken()
		var err error
		st, err = countRows(ctx, txn)
		return err
	})
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("count the cache's index: usage and gauges are short of it", "err", err)
		}
		return
	}
	s.metrics.blobs.Add(float64(st.Blobs))
	s.metrics.sizeBytes.Add(float64(st.Bytes))
	s.usage.Add(st.Bytes)
	s.indexUsage.Add(st.IndexBytes)
	s.signalGrowth()
}

// Close cancels the downloads in flight, waits for them to clean up, writes
// the batched access times and closes the index. The Store must not be used
// afterwards; Close may be called more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.downloads.Lock()
		s.closed = true
		s.downloads.EachLocked(func(_ fillKey, f *fill.Fill[*download]) { f.Cancel(ErrClosed) })
		s.downloads.Unlock()
		s.fills.Wait()
		s.stopCount()
		s.counting.Wait()

		s.closeErr = errors.Join(
			s.FlushAccess(context.Background()),
			s.db.Close(),
			s.unlock(),
		)
	})
	return s.closeErr
}

// Run does the index's housekeeping until ctx is done: it reconciles the
// index with the blob files once (see Reconcile), beside serving, writes
// batched access times every AccessFlushInterval and compacts the value log
// every GCInterval. Failures are logged, not returned, because a later
// round (or the next start's sweep) may succeed; Run returns nil when ctx
// is done.
func (s *Store) Run(ctx context.Context) error {
	var g errgroup.Group
	g.Go(func() error {
		if err := s.Reconcile(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("reconcile cache with its files", "err", err)
		}
		return nil
	})
	s.housekeep(ctx)
	return g.Wait()
}

// housekeep runs Run's periodic work until ctx is done.
func (s *Store) housekeep(ctx context.Context) {
	flush := time.NewTicker(s.accessFlushInterval)
	defer flush.Stop()
	gc := time.NewTicker(s.gcInterval)
	defer gc.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-flush.C:
			if err := s.FlushAccess(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("flush cache access times", "err", err)
			}
		case <-gc.C:
			if err := s.CompactValueLog(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("compact cache index", "err", err)
			}
		}
	}
}

// CompactValueLog rewrites the index's value-log files that are at least half
// garbage, until none is left. Run calls it periodically.
func (s *Store) CompactValueLog(ctx context.Context) error {
	return s.db.Compact(ctx)
}

// Stats counts what the cache holds.
type Stats struct {
	Blobs     int64 // blobs in the index
	Bytes     int64 // their total size
	Manifests int64 // manifests in the index
	Tags      int64 // tags in the index
	// IndexBytes is what the manifests and tags count against the budget.
	IndexBytes int64
}

// Stats scans the index and counts its rows.
func (s *Store) Stats(ctx context.Context) (Stats, error) {
	var st Stats
	err := s.db.View(ctx, func(txn index.Reader) error {
		var err error
		st, err = countRows(ctx, txn)
		return err
	})
	if err != nil {
		return Stats{}, fmt.Errorf("cache stats: %w", err)
	}
	return st, nil
}

// countRows counts the rows txn sees.
func countRows(ctx context.Context, txn index.Reader) (Stats, error) {
	var st Stats
	err := txn.Scan(ctx, []byte(prefixBlob), func(kv index.Row) error {
		row, err := unmarshalBlobRow(kv.Value)
		st.Blobs++
		st.Bytes += row.Size
		return err
	})
	if err != nil {
		return Stats{}, err
	}
	err = txn.ScanKeys(ctx, []byte(prefixManifest), func(kv index.Row) error {
		st.Manifests++
		st.IndexBytes += manifestCost(kv.Key, kv.ValueSize)
		return nil
	})
	if err != nil {
		return Stats{}, err
	}
	st.Tags, err = countKeys(ctx, txn, prefixTag)
	st.IndexBytes += st.Tags * tagCost
	return st, err
}

// countKeys counts the rows whose key starts with prefix.
func countKeys(ctx context.Context, txn index.Reader, prefix string) (int64, error) {
	var n int64
	err := txn.ScanKeys(ctx, []byte(prefix), func(index.Row) error {
		n++
		return nil
	})
	return n, err
}
