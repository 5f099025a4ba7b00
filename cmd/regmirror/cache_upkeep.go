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
	"github.com/regmirror/regmirror/internal/admin"
	"github.com/regmirror/regmirror/mirror"
)

// startCacheUpkeep binds the admin socket and claims the prefetcher for
// the first run of the prefetch list, so that both are in place before
// the registry port answers: a `regmirror prefetch` sent as soon as the
// daemon answers finds the socket and queues behind that run. It returns
// what keeps the cache within its budget, fetches the prefetch list on
// its schedule with pf, and answers the admin socket until ctx ends.
func startCacheUpkeep(store *cache.Store, cfg Config, m *mirror.Mirror, pf *prefetcher, reg *prometheus.Registry, log *slog.Logger) (func(ctx context.Context) error, error) {
	budget := cfg.Cache.eviction()
	if _, err := freeBytes(cfg.DataDir); errors.Is(err, errors.ErrUnsupported) {
		log.Warn("cannot measure free disk on this platform: cache.min_free_disk is ignored")
		budget.MinFreeDisk = 0
	}
	if budget.MaxSize == 0 {
		log.Warn("cache.max_size is not set: the cache grows until free disk falls under cache.min_free_disk",
			"min_free_disk", Size(budget.MinFreeDisk).String())
	}
	pins, err := cfg.pins()
	if err != nil {
		return nil, err
	}
	ev, err := eviction.New(admin.EvictionCache{Store: store, Pins: pins, Evicted: reportEvictions(cfg.notifier)}, budget, eviction.Options{
		Logger:     log,
		Registerer: reg,
		DiskFree:   func() (int64, error) { return freeBytes(cfg.DataDir) },
	})
	if err != nil {
		return nil, err
	}
	ops, err := newCacheOps(store, cfg, admin.Options{Traffic: admin.TrafficSince(m, time.Now()), Evictor: ev})
	if err != nil {
		return nil, err
	}
	listed, err := cfg.Prefetch.refs()
	if err != nil {
		return nil, err
	}
	adminMux := admin.Handler(ops, log)
	adminMux.Handle("POST "+admin.PrefetchPath, admin.Call(log, prefetchCall(pf, listed)))
	// The mirror is more important than its admin socket: without the
	// socket (say, a data directory path too long for one) it still serves.
	ln, err := admin.Listen(cfg.DataDir)
	if err != nil {
		log.Error("no admin socket: cache commands cannot reach this daemon", "err", err)
	}
	first := pf.claim(len(listed) > 0)
	return func(ctx context.Context) error {
		g, gctx := errgroup.WithContext(ctx)
		g.Go(func() error { return ev.Run(gctx, store.Grew()) })
		g.Go(func() error { return pf.runSchedule(gctx, first, listed, cfg.Prefetch.interval()) })
		if ln != nil {
			g.Go(func() error { return admin.Serve(gctx, ln, adminMux, log) })
		}
		return g.Wait()
	}, nil
}
