package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/internal/admin"
	"github.com/regmirror/regmirror/internal/statuspage"
	"github.com/regmirror/regmirror/mirror"
	"github.com/regmirror/regmirror/upstream"
)

// operatorMux serves the operational endpoints, all cheap except the
// status page, whose index scan statuspage.Page rations: /metrics, /healthz
// (the process is alive), /readyz (it can serve), / (the status page) and
// /status.json. None needs a login; the status page names repositories
// only to the users of status.users. A nil status leaves the last two out,
// for the separate metrics listener.
func operatorMux(reg *prometheus.Registry, ready readiness, status *statuspage.Page) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", serveHealthz)
	mux.HandleFunc("GET /readyz", ready.serve)
	if status != nil {
		mux.HandleFunc("GET /{$}", status.ServeHTML)
		mux.HandleFunc("GET /status.json", status.ServeJSON)
		mux.HandleFunc("GET /browse", status.ServeBrowse)
	}
	return mux
}

// operator is the daemon's operational surface, built once and mounted on
// the registry listener and, with --metrics-listen, on a listener of its own.
type operator struct {
	reg    *prometheus.Registry
	ready  readiness
	status *statuspage.Page
}

// newOperator wires the endpoints to the daemon's cache, mirror, upstream
// clients (through the metrics they register on reg) and prefetcher.
func newOperator(cfg Config, store *cache.Store, m *mirror.Mirror, pf *prefetcher, reg *prometheus.Registry, log *slog.Logger) (*operator, error) {
	started := time.Now()
	ops, err := newCacheOps(store, cfg, admin.Options{Traffic: admin.TrafficSince(m, started)})
	if err != nil {
		return nil, err
	}
	upstreams, err := upstream.NewMonitor(reg)
	if err != nil {
		return nil, err
	}
	var hosts []string
	for _, u := range cfg.effectiveUpstreams() {
		hosts = append(hosts, u.Host)
	}
	return &operator{
		reg:   reg,
		ready: readiness{store: store, dataDir: cfg.DataDir, minFree: readyFloor(cfg.Cache), freeBytes: freeBytes},
		status: statuspage.New(statuspage.Options{
			Cache:      ops,
			Mirror:     m,
			Upstreams:  upstreams,
			Configured: hosts,
			Users:      cfg.Status.Users,
			Version:    buildVersion(),
			Started:    started,
			Log:        log,
			Prefetch:   pf.current,
		}),
	}, nil
}

// mux is everything, for the registry listener.
func (o *operator) mux() *http.ServeMux { return operatorMux(o.reg, o.ready, o.status) }

// metricsMux leaves the status page out, for --metrics-listen.
func (o *operator) metricsMux() *http.ServeMux { return operatorMux(o.reg, o.ready, nil) }

// serveMetrics runs the metrics listener at addr until ctx ends.
func serveMetrics(ctx context.Context, addr string, h http.Handler, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics listener on %s: %w", addr, err)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	stop := context.AfterFunc(ctx, func() { srv.Close() })
	defer stop()
	log.Info("metrics listening", "addr", ln.Addr().String())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics listener: %w", err)
	}
	return nil
}
