//go:build !unix

package cache

// lockDir is a no-op where flock is unavailable; Badger's own directory lock
// still keeps a second process from opening the index.
func lockDir(string) (release func() error, err error) {
	return func() error { return nil }, nil
}
