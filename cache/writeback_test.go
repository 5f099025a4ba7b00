package cache

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// Starting writeback is invisible but for timing; what must hold is that the
// file gets every byte, in order, whatever the chunk boundaries.
func TestWritebackFileWritesEverything(t *testing.T) {
	t.Parallel()
	const chunk = 4096
	tests := []struct {
		name   string
		writes []int // sizes of successive writes
	}{
		{name: "below one chunk", writes: []int{100, 200}},
		{name: "exactly one chunk", writes: []int{chunk}},
		{name: "writes straddling chunks", writes: []int{3000, 3000, 3000, 100}},
		{name: "one write of several chunks", writes: []int{3*chunk + 7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, err := os.Create(filepath.Join(t.TempDir(), "blob"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			w := &writebackFile{f: f, chunk: chunk}
			var want []byte
			for i, n := range tt.writes {
				p := bytes.Repeat([]byte{byte('a' + i)}, n)
				if got, err := w.Write(p); err != nil || got != n {
					t.Fatalf("Write(%d bytes) = %d, %v", n, got, err)
				}
				want = append(want, p...)
			}
			got, err := os.ReadFile(f.Name())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("file has %d bytes, not the %d written", len(got), len(want))
			}
			if pending := w.written - w.started; pending < 0 || pending >= chunk {
				t.Errorf("%d bytes written, writeback started up to %d: want less than a chunk pending", w.written, w.started)
			}
		})
	}
}
