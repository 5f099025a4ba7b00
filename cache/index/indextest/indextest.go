// Package indextest is the contract suite of index.DB: every implementation
// of the cache's index store runs Run against itself in its own tests.
// Each case states a property the cache relies on.
package indextest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/regmirror/regmirror/cache/index"
)

// Open opens the store kept in dir, which is empty the first time and holds
// what the previous store in dir left there after its Close. The suite
// closes every store it opens.
type Open func(t *testing.T, dir string) index.DB

// Run runs the contract against the stores open makes: each subtest gets a
// new, empty directory of its own.
func Run(t *testing.T, open Open) {
	tests := []struct {
		name string
		run  func(*testing.T, index.DB)
	}{
		{"GetSetDelete", testGetSetDelete},
		{"PointReads", testPointReads},
		{"MissingIsNotFound", testMissingIsNotFound},
		{"GetReturnsACopy", testGetReturnsACopy},
		{"EmptyValue", testEmptyValue},
		{"ScanInKeyOrder", testScanInKeyOrder},
		{"ScanStaysInsideItsPrefix", testScanStaysInsideItsPrefix},
		{"ScanKeysReadsNoValue", testScanKeysReadsNoValue},
		{"ValueSizeOfALargeValue", testValueSizeOfALargeValue},
		{"ScanKeysEachPrefixInTurn", testScanKeysEachPrefixInTurn},
		{"ScanStops", testScanStops},
		{"ScanStopsWhenCanceled", testScanStopsWhenCanceled},
		{"DoneContextRunsNothing", testDoneContextRunsNothing},
		{"UpdateIsAtomic", testUpdateIsAtomic},
		{"UpdateSeesItsOwnWrites", testUpdateSeesItsOwnWrites},
		{"ViewIsASnapshot", testViewIsASnapshot},
		{"ConflictRunsUpdateAgain", testConflictRunsUpdateAgain},
		{"ConcurrentUpdatesLoseNothing", testConcurrentUpdatesLoseNothing},
		{"LargeTransactions", testLargeTransactions},
		{"CompactKeepsRows", testCompactKeepsRows},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, openClosed(t, open, t.TempDir()))
		})
	}
	t.Run("ReopenKeepsCommittedRows", func(t *testing.T) {
		t.Parallel()
		testReopenKeepsCommittedRows(t, open)
	})
}

// openClosed opens the store in dir and closes it when the test ends.
func openClosed(t *testing.T, open Open, dir string) index.DB {
	t.Helper()
	db := open(t, dir)
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return db
}

var ctx = context.Background()

// set commits key=value.
func set(t *testing.T, db index.DB, key, value string) {
	t.Helper()
	if err := db.Update(ctx, func(txn index.Txn) error { return txn.Set([]byte(key), []byte(value)) }); err != nil {
		t.Fatalf("Set %q: %v", key, err)
	}
}

// get reads key in a View; ok is false when the store has no such key.
func get(t *testing.T, db index.DB, key string) (value string, ok bool) {
	t.Helper()
	err := db.View(ctx, func(r index.Reader) error {
		v, err := r.Get([]byte(key))
		value = string(v)
		return err
	})
	if errors.Is(err, index.ErrNotFound) {
		return "", false
	}
	if err != nil {
		t.Fatalf("Get %q: %v", key, err)
	}
	return value, true
}

// wantValue fails the test unless key holds want.
func wantValue(t *testing.T, db index.DB, key, want string) {
	t.Helper()
	if got, ok := get(t, db, key); !ok || got != want {
		t.Fatalf("%q = %q (present: %v), want %q", key, got, ok, want)
	}
}

// wantAbsent fails the test unless the store lacks key.
func wantAbsent(t *testing.T, db index.DB, key string) {
	t.Helper()
	if got, ok := get(t, db, key); ok {
		t.Fatalf("%q = %q, want absent", key, got)
	}
}

// scanFunc is one of a Reader's ways to scan the rows under a prefix.
type scanFunc func(ctx context.Context, prefix []byte, fn func(index.Row) error) error

// scanner is one of a Reader's ways to scan a prefix, by name.
type scanner struct {
	name string
	of   func(index.Reader) scanFunc
}

// The Reader's ways to scan one prefix: Scan, ScanKeys, and ScanKeysEach of
// that prefix alone. Each must meet the same rows.
var (
	byScan     = scanner{"Scan", func(r index.Reader) scanFunc { return r.Scan }}
	byScanKeys = scanner{"ScanKeys", func(r index.Reader) scanFunc { return r.ScanKeys }}
	byEach     = scanner{"ScanKeysEach", func(r index.Reader) scanFunc {
		return func(ctx context.Context, prefix []byte, fn func(index.Row) error) error {
			return r.ScanKeysEach(ctx, [][]byte{prefix}, func(_ int, kv index.Row) error { return fn(kv) })
		}
	}}
	scanners = []scanner{byScan, byScanKeys, byEach}
)

// scanKeys lists the keys under prefix, as sc meets them.
func scanKeys(t *testing.T, db index.DB, prefix string, sc scanner) []string {
	t.Helper()
	var keys []string
	err := db.View(ctx, func(r index.Reader) error {
		return sc.of(r)(ctx, []byte(prefix), func(row index.Row) error {
			keys = append(keys, string(row.Key))
			return nil
		})
	})
	if err != nil {
		t.Fatalf("scan %q: %v", prefix, err)
	}
	return keys
}

func testGetSetDelete(t *testing.T, db index.DB) {
	set(t, db, "blob/a", "1")
	wantValue(t, db, "blob/a", "1")
	set(t, db, "blob/a", "22")
	wantValue(t, db, "blob/a", "22")
	err := db.View(ctx, func(r index.Reader) error {
		has, err := r.Has([]byte("blob/a"))
		if err != nil || !has {
			return fmt.Errorf("Has of a stored key = %v, %v", has, err)
		}
		size, err := r.ValueSize([]byte("blob/a"))
		if err != nil || size != 2 {
			return fmt.Errorf("ValueSize = %d, %v; want 2", size, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(ctx, func(txn index.Txn) error { return txn.Delete([]byte("blob/a")) }); err != nil {
		t.Fatal(err)
	}
	wantAbsent(t, db, "blob/a")
	if err := db.Update(ctx, func(txn index.Txn) error { return txn.Delete([]byte("never/set")) }); err != nil {
		t.Fatalf("Delete of an absent key: %v", err)
	}
}

// The read path looks rows up without a View.
func testPointReads(t *testing.T, db index.DB) {
	set(t, db, "used-by/d\x00r", "b")
	if v, err := db.Get(ctx, []byte("used-by/d\x00r")); string(v) != "b" || err != nil {
		t.Errorf("Get = %q, %v; want the committed value", v, err)
	}
	if _, err := db.Get(ctx, []byte("used-by/d\x00s")); !errors.Is(err, index.ErrNotFound) {
		t.Errorf("Get of an absent key: %v, want ErrNotFound", err)
	}
	if has, err := db.Has(ctx, []byte("used-by/d\x00r")); !has || err != nil {
		t.Errorf("Has of a stored key = %v, %v", has, err)
	}
	if has, err := db.Has(ctx, []byte("used-by/d\x00s")); has || err != nil {
		t.Errorf("Has of an absent key = %v, %v", has, err)
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := db.Get(done, []byte("used-by/d\x00r")); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with a done context: %v", err)
	}
	if _, err := db.Has(done, []byte("used-by/d\x00r")); !errors.Is(err, context.Canceled) {
		t.Errorf("Has with a done context: %v", err)
	}
}

func testMissingIsNotFound(t *testing.T, db index.DB) {
	set(t, db, "blob/b", "x")
	key := []byte("blob/a")
	check := func(r index.Reader) error {
		if _, err := r.Get(key); !errors.Is(err, index.ErrNotFound) {
			return fmt.Errorf("Get of an absent key: %v, want ErrNotFound", err)
		}
		if _, err := r.ValueSize(key); !errors.Is(err, index.ErrNotFound) {
			return fmt.Errorf("ValueSize of an absent key: %v, want ErrNotFound", err)
		}
		if has, err := r.Has(key); has || err != nil {
			return fmt.Errorf("Has of an absent key = %v, %v", has, err)
		}
		return nil
	}
	if err := db.View(ctx, check); err != nil {
		t.Fatal("in View: ", err)
	}
	if err := db.Update(ctx, func(txn index.Txn) error { return check(txn) }); err != nil {
		t.Fatal("in Update: ", err)
	}
}

// The cache keeps values it read after the transaction ends, and changes
// the slices it read.
func testGetReturnsACopy(t *testing.T, db index.DB) {
	set(t, db, "k", "value")
	var v []byte
	err := db.View(ctx, func(r index.Reader) error {
		var err error
		v, err = r.Get([]byte("k"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	set(t, db, "k", "other")
	if string(v) != "value" {
		t.Fatalf("a value read before an overwrite reads %q after it", v)
	}
	copy(v, "XXXXX")
	wantValue(t, db, "k", "other")
}

// Keep marks may carry an empty reason.
func testEmptyValue(t *testing.T, db index.DB) {
	set(t, db, "keep/a", "")
	wantValue(t, db, "keep/a", "")
	if keys := scanKeys(t, db, "keep/", byScan); !slices.Equal(keys, []string{"keep/a"}) {
		t.Fatalf("scan = %q, want the empty-valued row", keys)
	}
}

// The cache's keys are fields separated by NUL; it lists tags and
// repositories in the order of their keys' bytes.
func testScanInKeyOrder(t *testing.T, db index.DB) {
	want := []string{
		"tag/r", "tag/r\x00", "tag/r\x00a", "tag/r\x00b", "tag/r\x00b\x00", "tag/r\x01",
		"tag/r/x\x00a", "tag/rA", "tag/ra", "tag/r\x7f", "tag/r\xff", "tag/r\xff\xff",
	}
	shuffled := slices.Clone(want)
	rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	err := db.Update(ctx, func(txn index.Txn) error {
		for _, k := range shuffled {
			if err := txn.Set([]byte(k), []byte(k)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, sc := range scanners {
		if got := scanKeys(t, db, "tag/", sc); !slices.Equal(got, want) {
			t.Errorf("%s order %q, want %q", sc.name, got, want)
		}
	}
	var values []string
	err = db.View(ctx, func(r index.Reader) error {
		return r.Scan(ctx, []byte("tag/"), func(row index.Row) error {
			values = append(values, string(row.Value))
			return nil
		})
	})
	if err != nil || !slices.Equal(values, want) {
		t.Fatalf("scanned values %q, %v; want each row's own value %q", values, err, want)
	}
}

// A scan of one digest's or one repository's rows must never return a
// neighbour's: the keys just outside the prefix on either side are stored.
func testScanStaysInsideItsPrefix(t *testing.T, db index.DB) {
	inside := []string{"used-by/d\x00", "used-by/d\x00a", "used-by/d\x00\xff\xff"}
	outside := []string{
		"used-by/d", "used-by/c\xff", "used-by/d\x01", "used-by/e", "used-by/", "used-by/d\xff",
		"used-by", "usedby/d\x00a", "repo-ref/d\x00a", "", "\xff",
	}
	err := db.Update(ctx, func(txn index.Txn) error {
		for _, k := range append(slices.Clone(inside), outside...) {
			if k == "" {
				continue // the empty key is not a row
			}
			if err := txn.Set([]byte(k), []byte("v")); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, sc := range scanners {
		if got := scanKeys(t, db, "used-by/d\x00", sc); !slices.Equal(got, inside) {
			t.Errorf("%s of the prefix = %q, want exactly %q", sc.name, got, inside)
		}
		if got := scanKeys(t, db, "used-by/\xff", sc); len(got) != 0 {
			t.Errorf("%s of a prefix no key has = %q, want nothing", sc.name, got)
		}
		if got := scanKeys(t, db, "", sc); len(got) != len(inside)+len(outside)-1 {
			t.Errorf("%s of everything = %q", sc.name, got)
		}
	}
}

// Counting manifests at Open reads their keys and sizes, never the values
// (up to 4 MiB each).
func testScanKeysReadsNoValue(t *testing.T, db index.DB) {
	set(t, db, "manifest/a", "small")
	set(t, db, "manifest/b", string(bytes.Repeat([]byte("m"), 64<<10)))
	var sizes []int64
	err := db.View(ctx, func(r index.Reader) error {
		return r.ScanKeys(ctx, []byte("manifest/"), func(row index.Row) error {
			if row.Value != nil {
				return fmt.Errorf("ScanKeys handed out the value of %q", row.Key)
			}
			sizes = append(sizes, row.ValueSize)
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(sizes) != 2 || sizes[0] != 5 {
		t.Fatalf("ScanKeys sizes %v, want 2 rows, the first of 5 bytes", sizes)
	}
}

// What a manifest counts against the budget is read from its size when it
// is stored, when it is counted at Open and when it is removed: the three
// must agree, and be close to its length.
func testValueSizeOfALargeValue(t *testing.T, db index.DB) {
	const n = 64 << 10
	key := []byte("manifest/big")
	set(t, db, string(key), string(bytes.Repeat([]byte("m"), n)))
	var byKey int64
	var byScan, byScanKeys []int64
	err := db.View(ctx, func(r index.Reader) error {
		var err error
		if byKey, err = r.ValueSize(key); err != nil {
			return err
		}
		err = r.Scan(ctx, key, func(row index.Row) error {
			if len(row.Value) != n {
				return fmt.Errorf("Scan read %d bytes, want %d", len(row.Value), n)
			}
			byScan = append(byScan, row.ValueSize)
			return nil
		})
		if err != nil {
			return err
		}
		return r.ScanKeys(ctx, key, func(row index.Row) error {
			byScanKeys = append(byScanKeys, row.ValueSize)
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if byKey < n-64 || byKey > n+64 {
		t.Fatalf("ValueSize of %d bytes = %d", n, byKey)
	}
	if !slices.Equal(byScan, []int64{byKey}) || !slices.Equal(byScanKeys, []int64{byKey}) {
		t.Fatalf("sizes differ: ValueSize %d, Scan %v, ScanKeys %v", byKey, byScan, byScanKeys)
	}
}

// Removing a chunk of blobs finds the references of each with one cursor.
func testScanKeysEachPrefixInTurn(t *testing.T, db index.DB) {
	for _, k := range []string{"used-by/a\x00x", "used-by/a\x00y", "used-by/ab\x00w", "used-by/b\x00z", "used-by/c\x00q", "used-by/a"} {
		set(t, db, k, "b")
	}
	prefixes := [][]byte{[]byte("used-by/b\x00"), []byte("used-by/none\x00"), []byte("used-by/a\x00"), []byte("used-by/b\x00")}
	var got []string
	err := db.View(ctx, func(r index.Reader) error {
		if err := r.ScanKeysEach(ctx, nil, func(int, index.Row) error { return errors.New("called without prefixes") }); err != nil {
			return err
		}
		return r.ScanKeysEach(ctx, prefixes, func(i int, kv index.Row) error {
			if kv.Value != nil {
				return fmt.Errorf("ScanKeysEach handed out the value of %q", kv.Key)
			}
			got = append(got, fmt.Sprintf("%d %s", i, kv.Key))
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"0 used-by/b\x00z", "2 used-by/a\x00x", "2 used-by/a\x00y", "3 used-by/b\x00z"}
	if !slices.Equal(got, want) {
		t.Fatalf("ScanKeysEach = %q, want %q", got, want)
	}
}

func testScanStops(t *testing.T, db index.DB) {
	for i := range 5 {
		set(t, db, "tag/"+strconv.Itoa(i), "v")
	}
	stop := errors.New("stop")
	for _, sc := range scanners {
		calls := 0
		err := db.View(ctx, func(r index.Reader) error {
			return sc.of(r)(ctx, []byte("tag/"), func(index.Row) error {
				calls++
				if calls == 2 {
					return stop
				}
				return nil
			})
		})
		if !errors.Is(err, stop) || calls != 2 {
			t.Errorf("%s returned %v after %d calls, want fn's error after 2", sc.name, err, calls)
		}
	}
}

// The count at Open stops when the store closes under it.
func testScanStopsWhenCanceled(t *testing.T, db index.DB) {
	for i := range 5 {
		set(t, db, "blob/"+strconv.Itoa(i), "v")
	}
	for _, sc := range scanners {
		scanCtx, cancel := context.WithCancel(ctx)
		calls := 0
		err := db.View(scanCtx, func(r index.Reader) error {
			return sc.of(r)(scanCtx, []byte("blob/"), func(index.Row) error {
				calls++
				cancel()
				return nil
			})
		})
		cancel()
		if !errors.Is(err, context.Canceled) || calls != 1 {
			t.Errorf("%s returned %v after %d calls, want context.Canceled after 1", sc.name, err, calls)
		}
	}
}

func testDoneContextRunsNothing(t *testing.T, db index.DB) {
	done, cancel := context.WithCancel(ctx)
	cancel()
	ran := false
	if err := db.View(done, func(index.Reader) error { ran = true; return nil }); !errors.Is(err, context.Canceled) || ran {
		t.Errorf("View with a done context: %v, fn ran: %v", err, ran)
	}
	err := db.Update(done, func(txn index.Txn) error { ran = true; return txn.Set([]byte("k"), []byte("v")) })
	if !errors.Is(err, context.Canceled) || ran {
		t.Errorf("Update with a done context: %v, fn ran: %v", err, ran)
	}
	wantAbsent(t, db, "k")
}

// A removal that fails half-way leaves every row it had not committed.
func testUpdateIsAtomic(t *testing.T, db index.DB) {
	set(t, db, "blob/a", "1")
	failed := errors.New("failed half-way")
	err := db.Update(ctx, func(txn index.Txn) error {
		if err := txn.Delete([]byte("blob/a")); err != nil {
			return err
		}
		if err := txn.Set([]byte("blob/b"), []byte("2")); err != nil {
			return err
		}
		return failed
	})
	if !errors.Is(err, failed) {
		t.Fatalf("Update returned %v, want fn's error", err)
	}
	wantValue(t, db, "blob/a", "1")
	wantAbsent(t, db, "blob/b")
}

// Unlinking deletes a reference and then scans the remaining ones: the scan
// must not see what the transaction deleted.
func testUpdateSeesItsOwnWrites(t *testing.T, db index.DB) {
	set(t, db, "used-by/d\x00a", "b")
	set(t, db, "used-by/d\x00b", "b")
	err := db.Update(ctx, func(txn index.Txn) error {
		if err := txn.Delete([]byte("used-by/d\x00a")); err != nil {
			return err
		}
		if err := txn.Set([]byte("used-by/d\x00c"), []byte("c")); err != nil {
			return err
		}
		if has, err := txn.Has([]byte("used-by/d\x00a")); has || err != nil {
			return fmt.Errorf("Has of a key deleted in the transaction = %v, %v", has, err)
		}
		if v, err := txn.Get([]byte("used-by/d\x00c")); string(v) != "c" || err != nil {
			return fmt.Errorf("Get of a key set in the transaction = %q, %v", v, err)
		}
		for _, sc := range scanners {
			var keys []string
			err := sc.of(txn)(ctx, []byte("used-by/d\x00"), func(row index.Row) error {
				keys = append(keys, string(row.Key))
				return nil
			})
			if err != nil {
				return err
			}
			if want := []string{"used-by/d\x00b", "used-by/d\x00c"}; !slices.Equal(keys, want) {
				return fmt.Errorf("%s in the transaction = %q, want %q", sc.name, keys, want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// The count at Open reads a snapshot while the store already serves:
// writes committed after the snapshot are counted by the writers.
func testViewIsASnapshot(t *testing.T, db index.DB) {
	set(t, db, "blob/a", "1")
	err := db.View(ctx, func(r index.Reader) error {
		err := db.Update(ctx, func(txn index.Txn) error {
			if err := txn.Set([]byte("blob/b"), []byte("2")); err != nil {
				return err
			}
			return txn.Set([]byte("blob/a"), []byte("changed"))
		})
		if err != nil {
			return err
		}
		if has, err := r.Has([]byte("blob/b")); has || err != nil {
			return fmt.Errorf("a View sees a row committed after it began (%v, %v)", has, err)
		}
		if v, err := r.Get([]byte("blob/a")); string(v) != "1" || err != nil {
			return fmt.Errorf("a View reads %q, %v, committed after it began; want the value before", v, err)
		}
		var keys []string
		err = r.ScanKeys(ctx, []byte("blob/"), func(row index.Row) error {
			keys = append(keys, string(row.Key))
			return nil
		})
		if err != nil || !slices.Equal(keys, []string{"blob/a"}) {
			return fmt.Errorf("a View's scan lists %q, %v; want what was there when it began", keys, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	wantValue(t, db, "blob/b", "2")
}

// Two commits of the same blob must not both count it: an Update that read
// a key another transaction wrote meanwhile runs again and sees that write.
func testConflictRunsUpdateAgain(t *testing.T, db index.DB) {
	set(t, db, "n", "0")
	runs := 0
	err := db.Update(ctx, func(txn index.Txn) error {
		runs++
		n, err := readCounter(txn)
		if err != nil {
			return err
		}
		if runs == 1 {
			increment(t, db) // commits after this transaction's snapshot
		}
		return txn.Set([]byte("n"), []byte(strconv.Itoa(n+1)))
	})
	if err != nil {
		t.Fatal(err)
	}
	if runs != 2 {
		t.Errorf("fn ran %d times, want 2: once more after the conflict", runs)
	}
	wantValue(t, db, "n", "2")
}

func readCounter(r index.Reader) (int, error) {
	v, err := r.Get([]byte("n"))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(string(v))
}

func increment(t *testing.T, db index.DB) {
	t.Helper()
	err := db.Update(ctx, func(txn index.Txn) error {
		n, err := readCounter(txn)
		if err != nil {
			return err
		}
		return txn.Set([]byte("n"), []byte(strconv.Itoa(n+1)))
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Access-time flushes, commits and removals update the same rows at once.
// Each Update either commits, once, or fails wrapping ErrConflict.
func testConcurrentUpdatesLoseNothing(t *testing.T, db index.DB) {
	set(t, db, "n", "0")
	const writers, rounds = 8, 25
	var mu sync.Mutex
	committed := 0
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for range rounds {
				err := db.Update(ctx, func(txn index.Txn) error {
					n, err := readCounter(txn)
					if err != nil {
						return err
					}
					return txn.Set([]byte("n"), []byte(strconv.Itoa(n+1)))
				})
				if err != nil && !errors.Is(err, index.ErrConflict) {
					t.Errorf("Update: %v, want nil or ErrConflict", err)
				}
				mu.Lock()
				if err == nil {
					committed++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if committed == 0 {
		t.Fatal("no Update committed")
	}
	wantValue(t, db, "n", strconv.Itoa(committed))
}

// The cache writes up to a few thousand rows in one transaction (a chunk
// of removals with their references), and manifests of up to 4 MiB.
func testLargeTransactions(t *testing.T, db index.DB) {
	const rows = 4096
	err := db.Update(ctx, func(txn index.Txn) error {
		for i := range rows {
			key := fmt.Sprintf("used-by/sha256:%064x\x00docker.io/library/repository-%d", i, i)
			if err := txn.Set([]byte(key), []byte{'b'}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Update of %d rows: %v", rows, err)
	}
	if got := len(scanKeys(t, db, "used-by/", byScanKeys)); got != rows {
		t.Fatalf("%d rows committed, want %d", got, rows)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 4<<20/16)
	if err := db.Update(ctx, func(txn index.Txn) error { return txn.Set([]byte("manifest/big"), big) }); err != nil {
		t.Fatalf("Update of a 4 MiB value: %v", err)
	}
	wantValue(t, db, "manifest/big", string(big))
}

// Run compacts the store periodically while it serves.
func testCompactKeepsRows(t *testing.T, db index.DB) {
	big := bytes.Repeat([]byte("m"), 256<<10)
	for i := range 8 {
		set(t, db, "manifest/a", string(big[:len(big)-i]))
		set(t, db, "manifest/"+strconv.Itoa(i), string(big))
		if err := db.Update(ctx, func(txn index.Txn) error { return txn.Delete([]byte("manifest/" + strconv.Itoa(i))) }); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Compact(ctx); err != nil {
		t.Fatalf("Compact: %v", err)
	}
	wantValue(t, db, "manifest/a", string(big[:len(big)-7]))
	if keys := scanKeys(t, db, "manifest/", byScanKeys); !slices.Equal(keys, []string{"manifest/a"}) {
		t.Fatalf("after Compact the store lists %q", keys)
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if err := db.Compact(done); !errors.Is(err, context.Canceled) {
		t.Fatalf("Compact with a done context: %v", err)
	}
}

func testReopenKeepsCommittedRows(t *testing.T, open Open) {
	dir := t.TempDir()
	db := open(t, dir)
	big := string(bytes.Repeat([]byte("m"), 64<<10))
	set(t, db, "blob/a", "1")
	set(t, db, "manifest/big", big)
	set(t, db, "blob/gone", "x")
	if err := db.Update(ctx, func(txn index.Txn) error { return txn.Delete([]byte("blob/gone")) }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	db = openClosed(t, open, dir)
	wantValue(t, db, "blob/a", "1")
	wantValue(t, db, "manifest/big", big)
	wantAbsent(t, db, "blob/gone")
}
