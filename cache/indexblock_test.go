package cache

import (
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4/fb"
)

// envBlockTrailerChild names the data directory a child process opens and
// reads, to show that a damaged block never takes the process down.
const envBlockTrailerChild = "REGMIRROR_TEST_BLOCK_TRAILER_DIR"

// A single damaged word in a table (here: the entry count at the end of its
// first data block, one bit flipped) is an error when the index opens or
// when the block is read, never a panic of the daemon: with and without the
// stamp of a clean close.
func TestDamagedBlockTrailerNeverPanics(t *testing.T) {
	t.Parallel()
	for _, stamped := range []bool{true, false} {
		name := map[bool]string{true: "stamped", false: "unstamped"}[stamped]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			fillIndex(t, dir)
			path, _ := indexFile(t, filepath.Join(dir, "index"), ".sst")
			flipBlockEntryCount(t, path)
			if stamped {
				// Bit rot changes no file time: the stamp still matches.
				if err := writeTablesStamp(dir); err != nil {
					t.Fatal(err)
				}
			} else {
				if err := os.Remove(filepath.Join(dir, tablesStampName)); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestBlockTrailerChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), envBlockTrailerChild+"="+dir)
			out, err := cmd.CombinedOutput()
			if strings.Contains(string(out), "panic:") {
				t.Fatalf("a damaged block panicked the process:\n%s", firstLines(string(out), 20))
			}
			if err != nil {
				t.Fatalf("child failed: %v\n%s", err, out)
			}
		})
	}
}

// TestBlockTrailerChild opens the data directory its parent damaged and
// reads every row; it passes when that ends in an error or in rows.
func TestBlockTrailerChild(t *testing.T) {
	dir := os.Getenv(envBlockTrailerChild)
	if dir == "" {
		return // run only as the child of TestDamagedBlockTrailerNeverPanics
	}
	s, err := Open(context.Background(), Options{Dir: dir})
	if err != nil {
		return // refused to open: what a damaged index should do
	}
	defer s.Close()
	s.Blobs(context.Background())
}

// flipBlockEntryCount flips a high bit of the entry count that ends the
// first data block of the table at path (Badger v4's block layout: entries,
// entry offsets, a 4-byte entry count, the checksum, its 4-byte length).
func flipBlockEntryCount(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	end := len(data) - 4
	chk := int(binary.BigEndian.Uint32(data[end:]))
	end -= chk + 4
	indexLen := int(binary.BigEndian.Uint32(data[end:]))
	index := fb.GetRootAsTableIndex(data[end-indexLen:end], 0)
	var ko fb.BlockOffset
	if !index.Offsets(&ko, 0) {
		t.Fatal("the table has no blocks")
	}
	block := data[ko.Offset() : ko.Offset()+ko.Len()]
	pos := len(block) - 4
	pos -= int(binary.BigEndian.Uint32(block[pos:])) + 4
	count := binary.BigEndian.Uint32(block[pos:])
	binary.BigEndian.PutUint32(block[pos:], count|1<<20)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(block[pos:pos+4], int64(int(ko.Offset())+pos)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}
