package cache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ErrIndexDamaged means the index's files are torn or corrupt. The cache
// refuses to open rather than guess: the index also holds the manifests
// and tags of hosted repositories, which no blob file can bring back.
var ErrIndexDamaged = errors.New("the cache index is damaged")

// checkTables looks at the footer of every table file of the index in dir
// before Badger opens them. Badger reads a table's footer, the lengths of
// its checksum and block index, without bounds checks, in goroutines of its
// own: a torn table (a crash of the filesystem, a disk error) makes it
// panic and takes the whole daemon down, every time it starts. A footer
// that fits the file hands the table to Badger, which verifies the index
// against its checksum and fails with an error instead.
func checkTables(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // a new index
	}
	if err != nil {
		return fmt.Errorf("check index: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sst") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		if err := checkTableFooter(path); err != nil {
			return fmt.Errorf("%w: table %s: %v (%s)", ErrIndexDamaged, path, err, damagedIndexHint(dir))
		}
	}
	return nil
}

// damagedIndexHint tells an operator how to recover from a damaged index.
func damagedIndexHint(dir string) string {
	return "if the index is damaged, move " + dir + " aside: the cache then starts with an empty index rebuilt " +
		"from the blob files; cached manifests and tags are fetched again, hosted repositories lose their manifests and tags"
}

// checkTableFooter checks that the footer of the table at path fits in it:
// from the end, a 4-byte checksum length, the checksum, a 4-byte index
// length and the index (Badger v4's table layout).
func checkTableFooter(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	word := func(end int64) (int64, error) {
		if end < 4 {
			return 0, fmt.Errorf("%d bytes cannot hold its footer", size)
		}
		var b [4]byte
		if _, err := f.ReadAt(b[:], end-4); err != nil {
			return 0, err
		}
		return int64(binary.BigEndian.Uint32(b[:])), nil
	}
	checksumLen, err := word(size)
	if err != nil {
		return err
	}
	indexEnd := size - 4 - checksumLen
	indexLen, err := word(indexEnd)
	if err != nil || indexEnd-4-indexLen < 0 {
		return fmt.Errorf("its footer names %d checksum and %d index bytes, more than its %d bytes hold", checksumLen, indexLen, size)
	}
	return nil
}
