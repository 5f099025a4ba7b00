package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
)

// readiness decides /readyz: the cache's index is open, its data directory
// writable, and its filesystem not about to fill up.
type readiness struct {
	store interface {
		Ready(ctx context.Context) error
	}
	dataDir string
	// minFree is the free-disk floor in bytes; 0 means none.
	minFree int64
	// freeBytes measures the filesystem; errors.ErrUnsupported skips the floor.
	freeBytes func(path string) (int64, error)
}

// readyFloor is the free-disk floor below which /readyz fails: half of
// cache.min_free_disk. Eviction keeps free space above min_free_disk, so
// dipping under half of it means eviction has fallen behind or has nothing
// left to evict, and the mirror can no longer fill its cache reliably.
func readyFloor(cfg CacheConfig) int64 {
	return cfg.eviction().MinFreeDisk / 2
}

func (rd readiness) check(ctx context.Context) error {
	if err := rd.store.Ready(ctx); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	if rd.minFree <= 0 {
		return nil
	}
	free, err := rd.freeBytes(rd.dataDir)
	switch {
	case errors.Is(err, errors.ErrUnsupported):
		return nil
	case err != nil:
		return fmt.Errorf("measuring free disk: %w", err)
	case free < rd.minFree:
		return fmt.Errorf("free disk %s is below the floor of %s (half of cache.min_free_disk)", Size(free), Size(rd.minFree))
	}
	return nil
}

// serve answers 200 "ready" or 503 with the reason, as plain text.
func (rd readiness) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := rd.check(r.Context()); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "not ready: %v\n", err)
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

func serveHealthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte("ok\n"))
}
