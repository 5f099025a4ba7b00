//go:build !(linux || darwin || freebsd)

package cache

// FreeBytes returns -1 on systems where regmirror cannot ask for the free
// space of a filesystem: unknown, so no floor applies.
func FreeBytes(path string) (int64, error) {
	return -1, nil
}
