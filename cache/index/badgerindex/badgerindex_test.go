package badgerindex

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/cache/index"
	"github.com/regmirror/regmirror/cache/index/indextest"
	"github.com/regmirror/regmirror/internal/testfiles"
)

func TestContract(t *testing.T) {
	t.Parallel()
	indextest.Run(t, func(t *testing.T, dir string) index.DB {
		db, err := Open(context.Background(), filepath.Join(dir, "index"), Options{})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return db
	})
}

// openDB opens the index in dir and closes it with the test.
func openDB(t *testing.T, dir string) *DB {
	t.Helper()
	db, err := Open(context.Background(), dir, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return db
}

// bigValue is larger than the index keeps in its tables: it goes to the
// value log, as a large manifest does.
var bigValue = bytes.Repeat([]byte(" "), 16<<10)

// fillIndex writes rows shaped like the cache's (blob rows, references
// both ways, a manifest large enough for the value log, a tag) to a new
// index in a directory of its own, closes it, and returns the index's
// directory and its rows.
func fillIndex(t *testing.T) (dir string, rows map[string][]byte) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "index")
	db, err := Open(context.Background(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	rows = map[string][]byte{}
	for i := range 50 {
		d := randomDigest(t)
		rows["blob/"+string(d)] = []byte(strings.Repeat("b", 16+i%7))
		rows["repo-ref/docker.io/library/node\x00"+string(d)] = []byte{'b'}
		rows["used-by/"+string(d)+"\x00docker.io/library/node"] = []byte{'b'}
	}
	m := digest.FromBytes(bigValue)
	rows["manifest/"+string(m)] = bigValue
	rows["tag/docker.io/library/node\x00latest"] = []byte(m)
	err = db.Update(context.Background(), func(txn index.Txn) error {
		for k, v := range rows {
			if err := txn.Set([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, rows
}

func randomDigest(t *testing.T) digest.Digest {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return digest.FromBytes(b)
}

// readAll reads every row of db; a damaged table may end it early with an
// error, after the rows read so far.
func readAll(db index.DB) (map[string][]byte, error) {
	got := map[string][]byte{}
	err := db.View(context.Background(), func(r index.Reader) error {
		return r.Scan(context.Background(), nil, func(kv index.Row) error {
			got[string(kv.Key)] = bytes.Clone(kv.Value)
			return nil
		})
	})
	return got, err
}

// A torn table, whose footer names more bytes than the file holds, fails
// Open wrapping index.ErrDamaged, before Badger (which would panic on it)
// reads it.
func TestTornTableIsDamaged(t *testing.T) {
	t.Parallel()
	dir, _ := fillIndex(t)
	path, _ := testfiles.Largest(t, dir, ".sst")
	if err := os.Truncate(path, 100); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteAt([]byte{0xff, 0xff, 0xff, 0xff}, 96) // the checksum's length
	if err := errors.Join(err, f.Close()); err != nil {
		t.Fatal(err)
	}
	db, err := Open(context.Background(), dir, Options{})
	if err == nil {
		db.Close()
		t.Fatal("Open of a torn table succeeded")
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("Open error %q does not name the table", err)
	}
	if !errors.Is(err, index.ErrDamaged) {
		t.Errorf("Open error %q does not wrap index.ErrDamaged", err)
	}
}
