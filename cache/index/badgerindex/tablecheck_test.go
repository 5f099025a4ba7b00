package badgerindex

import (
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4/fb"

	"github.com/regmirror/regmirror/internal/testfiles"
)

// envBlockTrailerChild names the index a child process opens and reads, to
// show that a damaged block never takes the process down.
const envBlockTrailerChild = "REGMIRROR_TEST_BLOCK_TRAILER_DIR"

// A single damaged word in a table (here: the entry count at the end of its
// first data block, one bit flipped). Without a stamp, Open refuses the
// index. Under a stamp that still matches (bit rot changes no file time)
// Badger may panic on the block's first read, before it checks the block's
// checksum (v4.9.6); the daemon then stops, but Open had already taken the
// stamp, so the next start reads every table and refuses the index: the
// damage never turns into rows that were not stored.
func TestDamagedBlockTrailerIsRefused(t *testing.T) {
	t.Parallel()
	for _, stamped := range []bool{true, false} {
		name := map[bool]string{true: "stamped", false: "unstamped"}[stamped]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir, _ := fillIndex(t)
			path, _ := testfiles.Largest(t, dir, ".sst")
			flipBlockEntryCount(t, path)
			if stamped {
				// Bit rot changes no file time: the stamp still matches.
				if err := writeTablesStamp(dir); err != nil {
					t.Fatal(err)
				}
				runBlockTrailerChild(t, dir, true)
			} else if err := os.Remove(stampPath(dir)); err != nil {
				t.Fatal(err)
			}
			// The next start (the first one, unstamped) refuses the index.
			runBlockTrailerChild(t, dir, false)
			if _, err := os.Stat(stampPath(dir)); !os.IsNotExist(err) {
				t.Fatalf("a stamp vouches for the damaged index after a failed start: %v", err)
			}
		})
	}
}

// runBlockTrailerChild opens the index in dir in a child process and reads
// every row there. A panic is tolerated only when mayPanic is set; otherwise the
// child must see Open refuse the index.
func runBlockTrailerChild(t *testing.T, dir string, mayPanic bool) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestBlockTrailerChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), envBlockTrailerChild+"="+dir)
	out, err := cmd.CombinedOutput()
	switch {
	case strings.Contains(string(out), "panic:"):
		if !mayPanic {
			t.Fatalf("a damaged block panicked the process:\n%s", firstLines(string(out), 20))
		}
	case err != nil:
		t.Fatalf("child failed: %v\n%s", err, out)
	case !mayPanic && !strings.Contains(string(out), blockTrailerRefused):
		t.Fatalf("Open did not refuse the damaged index:\n%s", firstLines(string(out), 20))
	}
}

// blockTrailerRefused is what the child logs when Open refuses the index.
const blockTrailerRefused = "the index was refused"

// TestBlockTrailerChild opens the index its parent damaged and reads every
// row; it passes when that ends in an error or in rows.
func TestBlockTrailerChild(t *testing.T) {
	dir := os.Getenv(envBlockTrailerChild)
	if dir == "" {
		return // run only as the child of TestDamagedBlockTrailerIsRefused
	}
	db, err := Open(context.Background(), dir, Options{})
	if err != nil {
		t.Log(blockTrailerRefused, err)
		return
	}
	// No deferred Close: a panic must end the process as it ends the
	// daemon, without the clean close that would stamp the tables again.
	readAll(db)
	if err := db.Close(); err != nil {
		t.Log(err)
	}
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
