//go:build linux || darwin || freebsd

package cache

import (
	"fmt"
	"syscall"
)

// FreeBytes returns the space available to an unprivileged user on the
// filesystem holding path.
func FreeBytes(path string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", path, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}
