package badgerindex

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/cache/index"
	"github.com/regmirror/regmirror/internal/testfiles"
)

// A cleanly closed index opens without a full read of its tables, and the
// stamp that allows it exists only while the index is closed.
func TestCleanCloseSkipsTheFullIndexCheck(t *testing.T) {
	t.Parallel()
	dir, rows := fillIndex(t)
	stamp := stampPath(dir)
	if _, err := os.Stat(stamp); err != nil {
		t.Fatalf("no stamp after a clean close: %v", err)
	}
	db, err := Open(context.Background(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if db.verifiedInFull {
		t.Error("a cleanly closed index was read in full at Open")
	}
	if _, err := os.Stat(stamp); !os.IsNotExist(err) {
		t.Errorf("the stamp outlives Open (a crash now would leave it behind): %v", err)
	}
	got, err := readAll(db)
	if err != nil {
		t.Fatalf("read the index: %v", err)
	}
	for k, v := range rows {
		if !bytes.Equal(got[k], v) {
			t.Fatalf("row %q read back wrong", k)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stamp); err != nil {
		t.Errorf("no stamp after the second clean close: %v", err)
	}
}

// Without a stamp (the daemon crashed, or an older version closed it) every
// table is verified before the index serves a row.
func TestIndexWithoutAStampIsVerifiedInFull(t *testing.T) {
	t.Parallel()
	dir, _ := fillIndex(t)
	if err := os.Remove(stampPath(dir)); err != nil {
		t.Fatal(err)
	}
	if db := openDB(t, dir); !db.verifiedInFull {
		t.Error("an index without a stamp was not verified in full")
	}
}

// A stamp vouches for the exact files it describes: a table written to
// after the clean close, even with its size and modification time put
// back, or replaced by another file of the same name, size and times, is
// verified in full, and its damage refuses Open.
func TestStampDoesNotHideADamagedTable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		damage func(t *testing.T, path string, size int64)
	}{
		{"written to, times put back", func(t *testing.T, path string, size int64) {
			fi := statOrFail(t, path)
			if err := testfiles.Scribble(path, size/3); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(path, fi.ModTime(), fi.ModTime()); err != nil {
				t.Fatal(err)
			}
		}},
		{"replaced by a damaged copy with the same times", func(t *testing.T, path string, size int64) {
			fi := statOrFail(t, path)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			copy(data[size/3:], bytes.Repeat([]byte{0xa5}, 32))
			tmp := path + ".new"
			if err := os.WriteFile(tmp, data, fi.Mode()); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(tmp, fi.ModTime(), fi.ModTime()); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, path); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir, _ := fillIndex(t)
			path, size := testfiles.Largest(t, dir, ".sst")
			// Writes within the same clock tick must still count.
			time.Sleep(10 * time.Millisecond)
			tt.damage(t, path, size)
			db, err := Open(context.Background(), dir, Options{})
			if err == nil {
				db.Close()
				t.Fatal("Open of a damaged index succeeded under a stamp of the clean one")
			}
			if !strings.Contains(err.Error(), dir) {
				t.Fatalf("Open error %q does not name the index", err)
			}
		})
	}
}

// A table damaged at rest in a way no file time shows (bit rot: the stamp
// still matches) is checked block by block as it is read: the damaged rows
// fail to read, the others read right, and no row reads as other bytes.
// (A table written to while the daemon has it open is not guarded: Badger
// maps tables into memory and keeps blocks it has checked once.)
func TestTableRotUnderAStampNeverReadsAsOtherRows(t *testing.T) {
	t.Parallel()
	dir, rows := fillIndex(t)
	path, _ := testfiles.Largest(t, dir, ".sst")
	scribbleFirstBlockEntries(t, path)
	if err := writeTablesStamp(dir); err != nil { // the rot changed no file time
		t.Fatal(err)
	}
	db := openDB(t, dir)
	if db.verifiedInFull {
		t.Fatal("the refreshed stamp was not trusted: the test checks nothing")
	}
	got, err := readAll(db)
	for k, v := range got {
		if want, ok := rows[k]; !ok || !bytes.Equal(want, v) {
			t.Fatalf("a damaged table read row %q = %q, which was never stored", k, v)
		}
	}
	if err == nil && len(got) == len(rows) {
		t.Fatal("every row of a damaged table read back as if whole")
	}
}

// scribbleFirstBlockEntries overwrites bytes among the entries of the first
// data block of the table at path, away from the block's trailer (which
// Badger parses before it checks the checksum; see
// TestDamagedBlockTrailerIsRefused).
func scribbleFirstBlockEntries(t *testing.T, path string) {
	t.Helper()
	if err := testfiles.Scribble(path, 64); err != nil {
		t.Fatal(err)
	}
}

func statOrFail(t *testing.T, path string) os.FileInfo {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

// A table reached through a symbolic link (an operator moved it to another
// disk) is stamped as the file it names: writing that file after the clean
// close has the next Open verify it in full.
func TestStampFollowsASymlinkedTable(t *testing.T) {
	t.Parallel()
	dir, _ := fillIndex(t)
	path, size := testfiles.Largest(t, dir, ".sst")
	moved := filepath.Join(t.TempDir(), filepath.Base(path))
	if err := os.Rename(path, moved); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(moved, path); err != nil {
		t.Fatal(err)
	}
	db, err := Open(context.Background(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	fi := statOrFail(t, moved)
	if err := testfiles.Scribble(moved, size/3); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(moved, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	db, err = Open(context.Background(), dir, Options{})
	if err == nil {
		verified := db.verifiedInFull
		db.Close()
		if !verified {
			t.Fatal("a table written through its symbolic link after the clean close was trusted")
		}
	}
}

// A read that panics (Badger does on some damaged blocks, and net/http
// recovers a handler's panic) fails with index.ErrDamaged instead of
// taking the daemon down, and the index is not stamped at Close: the next
// start verifies it in full rather than trust it.
func TestAPanickingReadLeavesTheIndexUnstamped(t *testing.T) {
	t.Parallel()
	dir, _ := fillIndex(t)
	db, err := Open(context.Background(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	err = db.View(context.Background(), func(index.Reader) error { panic("bad block") })
	if !errors.Is(err, index.ErrDamaged) {
		t.Fatalf("a panicking read returned %v, want index.ErrDamaged", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stampPath(dir)); !os.IsNotExist(err) {
		t.Fatalf("the index was stamped after a read found it damaged: %v", err)
	}
	if db := openDB(t, dir); !db.verifiedInFull {
		t.Error("the index was trusted at the next Open")
	}
}
