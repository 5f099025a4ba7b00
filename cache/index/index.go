// Package index names what the cache needs from wherever it keeps its index
// rows (blob sizes and access times, manifests, tags, which repository uses
// what): an ordered key-value store with snapshot reads, serializable
// read-write transactions and prefix scans in key order. Badger, in
// cache/index/badgerindex, is today's implementation; every implementation
// must pass the contract suite in cache/index/indextest.
//
// The store keeps bytes, not meaning: keys and values are opaque to it, and
// the cache owns their encoding.
package index

import (
	"context"
	"errors"
)

var (
	// ErrNotFound is wrapped by the reads of a key the store does not hold.
	ErrNotFound = errors.New("index: key not found")
	// ErrConflict is wrapped by an Update whose transaction kept colliding
	// with concurrent ones after the store's retries.
	ErrConflict = errors.New("index: transaction conflict")
	// ErrDamaged is wrapped by an Open that found the store's files torn or
	// corrupt: it refuses them rather than guess.
	ErrDamaged = errors.New("the cache index is damaged")
)

// DB is an index store. Its methods are safe for concurrent use, until Close.
type DB interface {
	// Get and Has are Reader.Get and Reader.Has, each in a snapshot of its
	// own: the lookups of the read path, which this way pay for no
	// callback (a closure passed through an interface is allocated). They
	// return ctx's error without reading when ctx is done.
	Get(ctx context.Context, key []byte) ([]byte, error)
	Has(ctx context.Context, key []byte) (bool, error)
	// View runs fn with a read-only snapshot of the store, taken before fn
	// is called: writes committed after it began are not seen. It returns
	// ctx's error without calling fn when ctx is done, and otherwise fn's
	// error.
	View(ctx context.Context, fn func(Reader) error) error
	// Update runs fn in a read-write transaction that commits when fn
	// returns nil: all of its writes become visible at once, or none
	// (fn's error is returned as is, and nothing is written). A commit that
	// collides with a transaction committed since fn's snapshot (one wrote
	// a key fn read) runs fn again on a fresh snapshot, a bounded number of
	// times, so fn must be idempotent; past that, Update fails wrapping
	// ErrConflict. No committed write is ever lost to a concurrent one. It
	// returns ctx's error without running fn again when ctx is done.
	Update(ctx context.Context, fn func(Txn) error) error
	// Compact reclaims the space that deleted and overwritten rows hold,
	// where the store keeps such space apart, until there is none worth
	// reclaiming. It returns nil when there is nothing to do, ctx's error
	// when ctx is done, and the store's error otherwise.
	Compact(ctx context.Context) error
	// Close releases the store; committed rows are there when it is opened
	// again. It is called once, after every other call has returned.
	Close() error
}

// Reader reads one snapshot of the store. It is valid only inside the
// View or Update that handed it out, and is used by one goroutine.
type Reader interface {
	// Get returns a copy of key's value, which the caller may keep. It
	// fails wrapping ErrNotFound when the snapshot has no such key.
	Get(key []byte) ([]byte, error)
	// Has reports whether the snapshot holds key, without reading its value.
	Has(key []byte) (bool, error)
	// ValueSize returns the size of key's value without reading it: its
	// length, or for a large value one within a few bytes of it, the same
	// on every read of the same row (Row.ValueSize is the same number). It
	// fails wrapping ErrNotFound when the snapshot has no such key.
	ValueSize(key []byte) (int64, error)
	// Scan calls fn with every row whose key starts with prefix (every row
	// for an empty prefix), in the byte order of their keys, values read.
	// It stops at, and returns, the first error of fn, of ctx or of the
	// store itself. Inside an Update it sees the transaction's own writes
	// made before it began; fn may write, but what it writes may or may not
	// be seen by the scan.
	Scan(ctx context.Context, prefix []byte, fn func(Row) error) error
	// ScanKeys is Scan without reading the values: Row.Value is nil. It
	// costs no read of the values, however large they are.
	ScanKeys(ctx context.Context, prefix []byte, fn func(Row) error) error
	// ScanKeysEach is ScanKeys of each of prefixes in turn, in the order
	// given, telling fn the index of the prefix a row was found under. One
	// cursor serves them all: many narrow prefixes (the references of a
	// chunk of digests) cost a seek each rather than a scan each.
	ScanKeysEach(ctx context.Context, prefixes [][]byte, fn func(i int, kv Row) error) error
}

// Txn is a read-write transaction: a Reader that also sees its own writes.
// A write is visible to the rest of the store only once Update commits.
type Txn interface {
	Reader
	// Set writes key's value. The store may keep key and value until the
	// transaction ends: the caller must not change them.
	Set(key, value []byte) error
	// Delete removes key; removing a key the store does not hold is not an
	// error.
	Delete(key []byte) error
}

// Row is one row a scan met. Key and Value are valid only until the scan's
// callback returns: copy what is kept.
type Row struct {
	Key []byte
	// Value is the row's value; ScanKeys and ScanKeysEach leave it nil.
	Value []byte
	// ValueSize is as Reader.ValueSize reports it.
	ValueSize int64
}
