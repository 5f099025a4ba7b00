package main

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/eviction"
)

// runCacheUpkeep keeps the cache within its budget and answers the admin
// socket until ctx ends.
func runCacheUpkeep(ctx context.Context, store *cache.Store, cfg Config, reg *prometheus.Registry, log *slog.Logger) error {
	budget := cfg.Cache.eviction()
	if _, err := freeBytes(cfg.DataDir); errors.Is(err, errors.ErrUnsupported) {
		log.Warn("cannot measure free disk on this platform: cache.min_free_disk is ignored")
		budget.MinFreeDisk = 0
	}
	if budget.MaxSize == 0 {
		log.Warn("cache.max_size is not set: the cache grows until free disk falls under cache.min_free_disk",
			"min_free_disk", Size(budget.MinFreeDisk).String())
	}
	store.SetLimits(cfg.Cache.limits())
	pins, err := cfg.Cache.pins()
	if err != nil {
		return err
	}
	ev, err := eviction.New(evictionCache{store: store, pins: pins, evicted: reportEvictions(cfg.notifier)}, budget, eviction.Options{
		Logger:     log,
		Registerer: reg,
		DiskFree:   func() (int64, error) { return freeBytes(cfg.DataDir) },
	})
	if err != nil {
		return err
	}
	ops, err := newCacheOps(store, cfg.Cache, trafficFrom(reg, time.Now()))
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return ev.Run(gctx, store.Grew()) })
	// The mirror is more important than its admin socket: without the
	// socket (say, a data directory path too long for one) it still serves.
	if ln, err := listenAdmin(cfg.DataDir); err != nil {
		log.Error("no admin socket: cache commands cannot reach this daemon", "err", err)
	} else {
		g.Go(func() error { return serveAdmin(gctx, ln, ops, log) })
	}
	return g.Wait()
}
