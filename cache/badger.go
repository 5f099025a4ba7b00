package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// openIndex opens the Badger index in dataDir/index, tuned for a small
// footprint: the index holds a few hundred bytes per blob, and the daemon
// must stay small while it streams gigabytes, so Badger's defaults (64 MiB
// memtables, five of them, a 256 MiB block cache, 1 GiB value-log files)
// would dominate its memory. Every table is verified against its checksums
// at Open (verifiedInFull) unless a clean close stamped exactly these
// tables; then each block is verified when it is read instead.
func openIndex(dataDir string, log *slog.Logger) (db *badger.DB, verifiedInFull bool, err error) {
	dir := filepath.Join(dataDir, "index")
	trusted, err := takeTablesStamp(dataDir)
	if err != nil {
		return nil, false, err
	}
	if err := checkTables(dir, !trusted); err != nil {
		return nil, false, err
	}
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
	db, err = badger.Open(opts)
	if err != nil {
		return nil, false, fmt.Errorf("open index %s: %w (%s)", dir, err, damagedIndexHint(dir))
	}
	return db, !trusted, nil
}

// closeIndex closes the index and, when that went cleanly, stamps its
// tables so that the next Open need not read them in full.
func (s *Store) closeIndex() error {
	if err := s.db.Close(); err != nil {
		return err
	}
	if err := writeTablesStamp(s.dataDir); err != nil {
		s.log.Warn("the next start verifies the whole index", "err", err)
	}
	return nil
}

// maxConflictRetries bounds how often update re-runs a transaction that
// collided with a concurrent one (say, an access-time flush and a commit).
const maxConflictRetries = 8

// update runs fn in a read-write transaction, retrying on conflicts. fn must
// be idempotent: it may run more than once.
func (s *Store) update(ctx context.Context, fn func(txn *badger.Txn) error) error {
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := s.db.Update(fn)
		if !errors.Is(err, badger.ErrConflict) || attempt == maxConflictRetries {
			return err
		}
	}
}

// view runs fn in a read-only transaction.
func (s *Store) view(ctx context.Context, fn func(txn *badger.Txn) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(fn)
}

// badgerLogger routes Badger's warnings and errors to slog and drops its
// chatty informational messages.
type badgerLogger struct {
	log *slog.Logger
}

func (l badgerLogger) Errorf(format string, args ...any) {
	l.log.Error(badgerMessage(format, args), "component", "badger")
}

func (l badgerLogger) Warningf(format string, args ...any) {
	l.log.Warn(badgerMessage(format, args), "component", "badger")
}

func (badgerLogger) Infof(string, ...any)  {}
func (badgerLogger) Debugf(string, ...any) {}

func badgerMessage(format string, args []any) string {
	return strings.TrimSpace(fmt.Sprintf(format, args...))
}

// scan calls fn for every row whose key starts with prefix, fetching values
// ahead only when fn reads them.
func scan(ctx context.Context, txn *badger.Txn, prefix string, values bool, fn func(*badger.Item) error) error {
	it := txn.NewIterator(badger.IteratorOptions{
		PrefetchValues: values,
		PrefetchSize:   64,
		Prefix:         []byte(prefix),
	})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(it.Item()); err != nil {
			return err
		}
	}
	return nil
}

// countKeys counts the rows whose key starts with prefix.
func countKeys(ctx context.Context, txn *badger.Txn, prefix string) (int64, error) {
	var n int64
	err := scan(ctx, txn, prefix, false, func(*badger.Item) error {
		n++
		return nil
	})
	return n, err
}
