// Package eviction decides what leaves the cache when it outgrows its
// budget: the least recently used blobs first, until usage is back under the
// low watermark, never anything pinned or in use. Selection is a pure
// function of the candidates, so it is table-tested without a disk.
package eviction
