//go:build linux && !arm

package cache

import (
	"os"
	"syscall"
)

// syncFileRangeWrite is SYNC_FILE_RANGE_WRITE from linux/fs.h: start
// writeback of the range's dirty pages without waiting for it.
const syncFileRangeWrite = 0x2

// startWriteback asks the kernel to start writing n bytes of f at off to
// disk, without waiting for them.
func startWriteback(f *os.File, off, n int64) {
	raw, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		_ = syscall.SyncFileRange(int(fd), off, n, syncFileRangeWrite)
	})
}
