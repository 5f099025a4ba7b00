package badgerindex

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Verifying every block of every index table when the index opens takes a
// read of the whole index: at a million blobs, 280 MB read and mapped into
// the daemon before it serves. Doing it on every start buys nothing when the
// tables are exactly the ones this cache closed cleanly, so a clean Close
// leaves a stamp of each table (name, size, modification and change times,
// inode), and the next Open verifies tables in full only when the stamp is
// missing (a crash, an older version) or any table differs from it (a
// restored backup, a table written to, torn or replaced). Every block is
// still verified when it is read, so a table damaged under a matching stamp
// answers with an error, never with other rows.

// stampPath is the stamp's file for the index in dir: beside the
// directory, out of Badger's way (<data dir>/index.tables for the cache's).
func stampPath(dir string) string { return dir + ".tables" }

// stampMode keeps the stamp private, as is everything the cache writes.
const stampMode = 0o600

// tableStamp identifies one table file as it was when the index closed.
type tableStamp struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	MTime  int64  `json:"mtime_ns"`
	CTime  int64  `json:"ctime_ns"`
	Inode  uint64 `json:"inode"`
	Device uint64 `json:"device"`
}

// stampTables describes every table file of the index in dir, sorted by
// name. ok is false where the platform cannot tell a file's change time and
// inode: a stamp is then never trusted.
func stampTables(dir string) (stamps []tableStamp, ok bool, err error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil // moved aside: a new index starts
	}
	if err != nil {
		return nil, false, fmt.Errorf("stamp index tables: %w", err)
	}
	ok = true
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sst") {
			continue
		}
		// Stat, not the entry's Lstat: a table reached through a symbolic
		// link is stamped as the file Badger reads.
		fi, err := os.Stat(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, false, fmt.Errorf("stamp index tables: %w", err)
		}
		st, known := statIdentity(fi)
		ok = ok && known
		st.Name, st.Size, st.MTime = e.Name(), fi.Size(), fi.ModTime().UnixNano()
		stamps = append(stamps, st)
	}
	return stamps, ok, nil
}

// writeTablesStamp records the tables of the index in dir after a clean
// close. A failure only costs the next start a full verification, so the
// caller logs it rather than failing Close.
func writeTablesStamp(dir string) error {
	stamps, ok, err := stampTables(dir)
	if err != nil || !ok {
		return err
	}
	data, err := json.Marshal(stamps)
	if err != nil {
		return fmt.Errorf("stamp index tables: %w", err)
	}
	tmp := stampPath(dir) + ".tmp"
	if err := writeFileSynced(tmp, data); err != nil {
		return fmt.Errorf("stamp index tables: %w", err)
	}
	if err := os.Rename(tmp, stampPath(dir)); err != nil {
		return fmt.Errorf("stamp index tables: %w", err)
	}
	return nil
}

// takeTablesStamp reports whether the tables of the index in dir are
// exactly those a clean close stamped, and removes the stamp: from now on
// the tables may change, and a crash must leave no stamp behind.
func takeTablesStamp(dir string) (trusted bool, err error) {
	path := stampPath(dir)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read index tables stamp: %w", err)
	}
	if err := os.Remove(path); err != nil {
		return false, fmt.Errorf("remove index tables stamp: %w", err)
	}
	var stamped []tableStamp
	if json.Unmarshal(data, &stamped) != nil {
		return false, nil // a torn stamp trusts nothing
	}
	now, ok, err := stampTables(dir)
	if err != nil {
		return false, err
	}
	return ok && len(now) > 0 && slices.Equal(now, stamped), nil
}

// writeFileSynced writes data to a new file at path and syncs it.
func writeFileSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, stampMode)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}
