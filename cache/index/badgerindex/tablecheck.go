package badgerindex

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/dgraph-io/badger/v4/fb"
	"github.com/dgraph-io/badger/v4/pb"
	"github.com/dgraph-io/badger/v4/y"
	"google.golang.org/protobuf/proto"

	"github.com/regmirror/regmirror/cache/index"
)

// checkTables looks at the footer of every table file of the index in dir
// before Badger opens them, and with blocks set at the trailer of every
// data block too. Badger reads a table's footer, the lengths of
// its checksum and block index, without bounds checks, in goroutines of its
// own: a torn table (a crash of the filesystem, a disk error) makes it
// panic and takes the whole daemon down, every time it starts. A footer
// that fits the file hands the table to Badger, which verifies the index
// against its checksum and fails with an error instead. Badger parses a
// data block's trailer (its checksum and entry counts) before it verifies
// the block, so a damaged trailer panics it too: blocks has every trailer
// checked first, which costs two small reads a block and is done only where
// Badger reads every block anyway (an index opened without a stamp).
func checkTables(ctx context.Context, dir string, blocks bool) error {
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
		if err := ctx.Err(); err != nil {
			return err
		}
		path := filepath.Join(dir, e.Name())
		if err := checkTable(path, blocks); err != nil {
			return fmt.Errorf("%w: table %s: %v", index.ErrDamaged, path, err)
		}
	}
	return nil
}

// checkTable checks the table at path: its footer, and with blocks the
// trailer of each of its data blocks.
func checkTable(path string, blocks bool) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	footer, err := checkTableFooter(f, fi.Size())
	if err != nil || !blocks {
		return err
	}
	return checkBlockTrailers(f, footer)
}

// tableFooter locates the block index of a table.
type tableFooter struct {
	checksumStart, checksumLen int64
	indexStart, indexLen       int64
}

// checkTableFooter checks that the footer of the table f of size bytes
// fits in it: from the end, a 4-byte checksum length, the checksum, a
// 4-byte index length and the index (Badger v4's table layout).
func checkTableFooter(f *os.File, size int64) (tableFooter, error) {
	checksumLen, err := readWord(f, size, size)
	if err != nil {
		return tableFooter{}, err
	}
	indexEnd := size - 4 - checksumLen
	indexLen, err := readWord(f, indexEnd, size)
	if err != nil || indexEnd-4-indexLen < 0 {
		return tableFooter{}, fmt.Errorf("its footer names %d checksum and %d index bytes, more than its %d bytes hold", checksumLen, indexLen, size)
	}
	return tableFooter{
		checksumStart: indexEnd, checksumLen: checksumLen,
		indexStart: indexEnd - 4 - indexLen, indexLen: indexLen,
	}, nil
}

// checkBlockTrailers checks, once the block index matches its checksum,
// that every data block's trailer fits in the block: from the end, a
// 4-byte checksum length, the checksum, a 4-byte entry count and 4 bytes
// of offset per entry.
func checkBlockTrailers(f *os.File, footer tableFooter) error {
	index := make([]byte, footer.indexLen)
	checksum := make([]byte, footer.checksumLen)
	if _, err := f.ReadAt(index, footer.indexStart); err != nil {
		return err
	}
	if _, err := f.ReadAt(checksum, footer.checksumStart); err != nil {
		return err
	}
	var want pb.Checksum
	if err := proto.Unmarshal(checksum, &want); err != nil {
		return fmt.Errorf("its block index checksum: %w", err)
	}
	if err := y.VerifyChecksum(index, &want); err != nil {
		return fmt.Errorf("its block index: %w", err)
	}
	table := fb.GetRootAsTableIndex(index, 0)
	var block fb.BlockOffset
	for i := range table.OffsetsLength() {
		if !table.Offsets(&block, i) {
			return fmt.Errorf("block %d is missing from its index", i)
		}
		if err := checkBlockTrailer(f, int64(block.Offset()), int64(block.Len()), footer.indexStart); err != nil {
			return fmt.Errorf("block %d: %w", i, err)
		}
	}
	return nil
}

// checkBlockTrailer checks the trailer of the data block of n bytes at off.
func checkBlockTrailer(f *os.File, off, n, dataEnd int64) error {
	if off < 0 || n < 8 || off+n > dataEnd {
		return fmt.Errorf("%d bytes at %d do not fit among the data blocks", n, off)
	}
	checksumLen, err := readWord(f, off+n, off+n)
	if err != nil {
		return err
	}
	countEnd := n - 4 - checksumLen
	if countEnd < 4 {
		return fmt.Errorf("its trailer names %d checksum bytes, more than its %d bytes hold", checksumLen, n)
	}
	entries, err := readWord(f, off+countEnd, off+n)
	if err != nil {
		return err
	}
	if 4*entries > countEnd-4 {
		return fmt.Errorf("its trailer names %d entries, more than its %d bytes hold", entries, n)
	}
	return nil
}

// readWord reads the big-endian 4-byte word that ends at end, in a file
// of size bytes.
func readWord(f *os.File, end, size int64) (int64, error) {
	if end < 4 {
		return 0, fmt.Errorf("%d bytes cannot hold its footer", size)
	}
	var b [4]byte
	if _, err := f.ReadAt(b[:], end-4); err != nil {
		return 0, err
	}
	return int64(binary.BigEndian.Uint32(b[:])), nil
}
