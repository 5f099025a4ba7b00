//go:build !linux || arm

package cache

import "os"

// startWriteback does nothing where sync_file_range is not available (or,
// on 32-bit ARM, has another signature); publish's fsync does all the work.
func startWriteback(*os.File, int64, int64) {}
