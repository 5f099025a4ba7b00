//go:build unix

package cache

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockDir takes an exclusive advisory lock on dir that lasts until release
// is called or the process exits. Badger locks its own directory too, but its
// error cannot be told apart from other failures; this one can, and it also
// guards the blob and temp directories.
func lockDir(dir string) (release func() error, err error) {
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, fileMode)
	if err != nil {
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("data directory %s is %w", dir, ErrLocked)
		}
		return nil, fmt.Errorf("lock data directory %s: %w", dir, err)
	}
	// Closing the descriptor releases the lock.
	return f.Close, nil
}
