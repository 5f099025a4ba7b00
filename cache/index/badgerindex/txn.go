package badgerindex

import (
	"context"
	"errors"

	"github.com/dgraph-io/badger/v4"

	"github.com/regmirror/regmirror/cache/index"
)

// txn is a Badger transaction as an index.Txn (or, read-only, an
// index.Reader). It holds one pointer, so it is handed out as an interface
// without an allocation.
type txn struct {
	t *badger.Txn
}

var _ index.Txn = txn{}

func (x txn) Get(key []byte) ([]byte, error) {
	item, err := x.t.Get(key)
	if err != nil {
		return nil, notFound(err)
	}
	return item.ValueCopy(nil)
}

func (x txn) Has(key []byte) (bool, error) {
	_, err := x.t.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	return err == nil, err
}

func (x txn) ValueSize(key []byte) (int64, error) {
	item, err := x.t.Get(key)
	if err != nil {
		return 0, notFound(err)
	}
	return item.ValueSize(), nil
}

// notFound turns Badger's not-found into index.ErrNotFound, itself, so
// that a miss costs no allocation.
func notFound(err error) error {
	if errors.Is(err, badger.ErrKeyNotFound) {
		return index.ErrNotFound
	}
	return err
}

func (x txn) Set(key, value []byte) error { return x.t.Set(key, value) }

func (x txn) Delete(key []byte) error { return x.t.Delete(key) }

func (x txn) Scan(ctx context.Context, prefix []byte, fn func(index.Row) error) error {
	return x.iterate(ctx, prefix, true, func(item *badger.Item) error {
		return item.Value(func(v []byte) error {
			return fn(index.Row{Key: item.Key(), Value: v, ValueSize: item.ValueSize()})
		})
	})
}

func (x txn) ScanKeys(ctx context.Context, prefix []byte, fn func(index.Row) error) error {
	return x.iterate(ctx, prefix, false, func(item *badger.Item) error {
		return fn(index.Row{Key: item.Key(), ValueSize: item.ValueSize()})
	})
}

func (x txn) ScanKeysEach(ctx context.Context, prefixes [][]byte, fn func(int, index.Row) error) error {
	if len(prefixes) == 0 {
		return nil
	}
	// Creating an iterator costs far more than seeking one.
	it := x.t.NewIterator(badger.IteratorOptions{Prefix: commonPrefix(prefixes)})
	defer it.Close()
	for i, prefix := range prefixes {
		for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			item := it.Item()
			if err := fn(i, index.Row{Key: item.Key(), ValueSize: item.ValueSize()}); err != nil {
				return err
			}
		}
	}
	return nil
}

// iterate calls fn for every item whose key starts with prefix, fetching
// values ahead only when fn reads them.
func (x txn) iterate(ctx context.Context, prefix []byte, values bool, fn func(*badger.Item) error) error {
	it := x.t.NewIterator(badger.IteratorOptions{
		PrefetchValues: values,
		PrefetchSize:   64,
		Prefix:         prefix,
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

// commonPrefix is the longest prefix that all of prefixes share.
func commonPrefix(prefixes [][]byte) []byte {
	common := prefixes[0]
	for _, p := range prefixes[1:] {
		n := 0
		for n < len(common) && n < len(p) && common[n] == p[n] {
			n++
		}
		common = common[:n]
	}
	return common
}
