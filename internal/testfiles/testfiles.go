// Package testfiles helps tests damage the files of a store on purpose.
package testfiles

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Largest returns the largest file in dir whose name ends in suffix, and
// its size; the test fails when there is no such file with any bytes.
func Largest(t testing.TB, dir, suffix string) (string, int64) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var path string
	var size int64 = -1
	for _, e := range entries {
		fi, err := e.Info()
		if err == nil && strings.HasSuffix(e.Name(), suffix) && fi.Size() > size {
			path, size = filepath.Join(dir, e.Name()), fi.Size()
		}
	}
	if size <= 0 {
		t.Fatalf("no non-empty %s file in %s: %v", suffix, dir, entries)
	}
	return path, size
}

// Scribble overwrites 32 bytes of path at offset.
func Scribble(path string, offset int64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteAt(bytes.Repeat([]byte{0xa5}, 32), offset)
	return err
}
