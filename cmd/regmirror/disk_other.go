//go:build !(linux || darwin || freebsd)

package main

import "errors"

// freeBytes cannot measure free space on this platform; the daemon then
// runs without cache.min_free_disk.
func freeBytes(string) (int64, error) {
	return 0, errors.ErrUnsupported
}

// diskSize cannot measure the filesystem on this platform either.
func diskSize(string) (int64, error) {
	return 0, errors.ErrUnsupported
}
