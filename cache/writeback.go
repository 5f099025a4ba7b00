package cache

import "os"

// writebackChunk is how much of a download may sit dirty in the page cache
// before the kernel is asked to start writing it to disk. Without the hint
// the whole blob is written out by publish's fsync, after the last byte has
// arrived, and every reader waits for that before it gets the final byte:
// on the benchmark machine 100-300 ms per 128 MiB layer, most of what a cold
// pull through the mirror lost to a direct one.
const writebackChunk = 8 << 20

// writebackFile writes a download's temp file and starts the writeback of
// every full chunk as soon as it is written, so that the fsync in publish
// only has the tail left to flush. Starting writeback is a hint: failures
// are ignored, and durability still comes from the fsync.
type writebackFile struct {
	f     *os.File
	chunk int64
	// written is the file's size so far; started is where the range not
	// yet handed to the kernel for writeback begins.
	written, started int64
}

func newWritebackFile(f *os.File) *writebackFile {
	return &writebackFile{f: f, chunk: writebackChunk}
}

func (w *writebackFile) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.written += int64(n)
	if w.written-w.started >= w.chunk {
		startWriteback(w.f, w.started, w.written-w.started)
		w.started = w.written
	}
	return n, err
}
