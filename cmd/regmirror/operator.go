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
	"github.com/regmirror/regmirror/mirror"
)

// operatorMux serves the operational endpoints, all cheap except the
// status page, whose index scan statusPage rations: /metrics, /healthz
// (the process is alive), /readyz (it can serve), / (the status page) and
// /status.json. None needs a login; the status page names repositories
// only to the users of status.users. A nil status leaves the last two out,
// for the separate metrics listener.
func operatorMux(reg *prometheus.Registry, ready readiness, status *statusPage) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", serveHealthz)
	mux.HandleFunc("GET /readyz", ready.serve)
	if status != nil {
		mux.HandleFunc("GET /{$}", status.serveHTML)
		mux.HandleFunc("GET /status.json", status.serveJSON)
		mux.HandleFunc("GET /browse", status.serveBrowse)
	}
	return mux
}

// operator is the daemon's operational surface, built once and mounted on
// the registry listener and, with --metrics-listen, on a listener of its own.
type operator struct {
	reg    *prometheus.Registry
	ready  readiness
	status *statusPage
}

// newOperator wires the endpoints to the daemon's cache, mirror and metrics.
func newOperator(cfg Config, store *cache.Store, m *mirror.Mirror, reg *prometheus.Registry, log *slog.Logger) (*operator, error) {
	started := time.Now()
	traffic := trafficFrom(reg, started)
	ops, err := newCacheOps(store, cfg, traffic)
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
		status: &statusPage{
			stats:     ops.stats,
			traffic:   traffic,
			recent:    m.RecentPulls,
			metrics:   reg,
			upstreams: hosts,
			version:   buildVersion(),
			started:   started,
			now:       time.Now,
			log:       log,
			users:     cfg.Status.Users,
			identify:  m.User,
		},
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
