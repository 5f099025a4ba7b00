package badgerindex

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"github.com/regmirror/regmirror/cache/index"
)

// Options configure Open. The zero value means the defaults.
type Options struct {
	// Logger receives Badger's warnings and errors, and the failure to
	// stamp the tables at Close. Default: discard.
	Logger *slog.Logger
}

// DB is the index in one Badger directory. Its methods are safe for
// concurrent use, until Close.
type DB struct {
	db  *badger.DB
	dir string
	log *slog.Logger
	// verifiedInFull: Open read every block of the index, as it found no
	// stamp of a clean close matching its tables (see stamp.go).
	verifiedInFull bool
	// damaged is set when a read or write panicked: Badger panics on some
	// damaged blocks, and such a panic is recovered (net/http recovers a
	// handler's), so Close must not stamp tables it could not read.
	damaged atomic.Bool
}

var _ index.DB = (*DB)(nil)

// Open opens, or creates, the index in dir, beside which it keeps the
// stamp of its tables (dir + ".tables"). Badger's defaults (64 MiB
// memtables, five of them, a 256 MiB block cache, 1 GiB value-log files)
// are tuned down: the index holds a few hundred bytes per blob, and the
// daemon must stay small while it streams gigabytes. Every table is
// verified against its checksums at Open unless a clean Close stamped
// exactly these tables; then each block is verified when it is read
// instead. A damaged table fails Open wrapping index.ErrDamaged, or with
// Badger's error.
func Open(ctx context.Context, dir string, opts Options) (*DB, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	trusted, err := takeTablesStamp(dir)
	if err != nil {
		return nil, err
	}
	if err := checkTables(ctx, dir, !trusted); err != nil {
		return nil, err
	}
	db, err := badger.Open(badgerOptions(dir, log, trusted))
	if err != nil {
		return nil, fmt.Errorf("open index %s: %w", dir, err)
	}
	return &DB{db: db, dir: dir, log: log, verifiedInFull: !trusted}, nil
}

// badgerOptions tunes Badger for the index in dir; trusted says a stamp
// vouched for its tables.
func badgerOptions(dir string, log *slog.Logger, trusted bool) badger.Options {
	// Badger's OnTableAndBlockRead would do both, but its full check
	// dereferences a nil block on the first bad checksum (v4.9.6): a
	// damaged table would panic the daemon instead of failing Open. So an
	// unstamped index is read in full at Open, as before, and a stamped one
	// is checked block by block as it is read.
	mode := options.OnTableRead
	if trusted {
		mode = options.OnBlockRead
	}
	opts := badger.DefaultOptions(dir).
		WithLogger(badgerLogger{log: log}).
		WithLoggingLevel(badger.WARNING).
		WithMetricsEnabled(false).
		WithMemTableSize(8 << 20).
		WithNumMemtables(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(8).
		WithNumCompactors(2).
		WithNumGoroutines(2).
		WithCompression(options.None).
		// A table whose bytes changed on disk fails Open, or the read of
		// the changed block, with an error instead of answering with
		// garbage rows.
		WithChecksumVerificationMode(mode).
		// Values in the value log (large manifests) are checked on every
		// read, so a damaged one is an error, never other bytes.
		WithVerifyValueChecksum(true).
		WithBlockCacheSize(4 << 20).
		WithIndexCacheSize(2 << 20).
		WithValueLogFileSize(64 << 20).
		// Index rows stay in the LSM tree; only large manifests go to the value log.
		WithValueThreshold(4 << 10)
	// A compaction holds a builder of twice the table size for each table
	// it writes, several at once; with Badger's tables doubling per level,
	// the deep levels' 8-64 MiB tables made the daemon's anonymous memory
	// peak at 186 MiB while it compacted a million-blob index. Tables of
	// 1 MiB at every level brought that peak to 55 MiB, for about 300
	// table files at a million blobs.
	opts.BaseTableSize = 1 << 20
	opts.TableSizeMultiplier = 1
	return opts
}

// Close closes the index and, when that went cleanly, stamps its tables so
// that the next Open need not read them in full. A failed stamp only costs
// that Open a full read, so it is logged, not returned.
func (db *DB) Close() error {
	if err := db.db.Close(); err != nil {
		return err
	}
	if db.damaged.Load() {
		db.log.Warn("not stamping the index, which a read found damaged: the next start verifies it in full")
		return nil
	}
	if err := writeTablesStamp(db.dir); err != nil {
		db.log.Warn("the next start verifies the whole index", "err", err)
	}
	return nil
}

// maxConflictRetries bounds how often Update re-runs a transaction that
// collided with a concurrent one (say, an access-time flush and a commit).
const maxConflictRetries = 8

// Update runs fn in a read-write transaction, retrying on conflicts.
func (db *DB) Update(ctx context.Context, fn func(index.Txn) error) error {
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := db.guard(func() error { return db.db.Update(func(t *badger.Txn) error { return fn(txn{t}) }) })
		if !errors.Is(err, badger.ErrConflict) {
			return err
		}
		if attempt == maxConflictRetries {
			return fmt.Errorf("%w: %d attempts collided with concurrent transactions", index.ErrConflict, attempt+1)
		}
	}
}

// View runs fn in a read-only transaction.
func (db *DB) View(ctx context.Context, fn func(index.Reader) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return db.guard(func() error { return db.db.View(func(t *badger.Txn) error { return fn(txn{t}) }) })
}

// guard runs a transaction, turning a panic into an error wrapping
// index.ErrDamaged and marking the index damaged, so that it is neither
// trusted at the next start nor able to take the daemon down.
func (db *DB) guard(run func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			db.damaged.Store(true)
			err = fmt.Errorf("%w: reading it panicked: %v", index.ErrDamaged, r)
		}
	}()
	return run()
}

// Get reads key in a read-only transaction of its own.
func (db *DB) Get(ctx context.Context, key []byte) (value []byte, err error) {
	err = db.View(ctx, func(r index.Reader) error {
		value, err = r.Get(key)
		return err
	})
	return value, err
}

// Has looks key up in a read-only transaction of its own.
func (db *DB) Has(ctx context.Context, key []byte) (found bool, err error) {
	err = db.View(ctx, func(r index.Reader) error {
		found, err = r.Has(key)
		return err
	})
	return found, err
}

// Compact rewrites the value-log files that are at least half garbage,
// until none is left.
func (db *DB) Compact(ctx context.Context) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := db.db.RunValueLogGC(0.5)
		switch {
		case errors.Is(err, badger.ErrNoRewrite), errors.Is(err, badger.ErrRejected):
			return nil
		case err != nil:
			return fmt.Errorf("value log GC: %w", err)
		}
	}
}
