package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/urfave/cli/v2"
	"golang.org/x/sync/errgroup"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/internal/admin"
	"github.com/regmirror/regmirror/mirror"
)

// shutdownGrace is how long in-flight transfers may finish after SIGTERM.
const shutdownGrace = 30 * time.Second

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "run the mirror",
		Description: "Flags override the environment, which overrides the config file (--config). Upstreams,\n" +
			"credentials and the cache budget are set in the config file: every setting is listed in\n" +
			"docs/configuration.md. SIGHUP re-reads the config file's upstream settings without\n" +
			"dropping transfers in flight, and the htpasswd file, the token key files and TLS certificate.",
		Flags: []cli.Flag{
			&cli.StringFlag{
				Name:        "listen",
				Usage:       "address of the registry API",
				EnvVars:     []string{"REGMIRROR_LISTEN"},
				DefaultText: defaultListen,
			},
			dataDirFlag(),
			configFlag(),
			&cli.StringFlag{Name: "tls-cert", Usage: "TLS certificate file; with --tls-key, serve HTTPS", EnvVars: []string{"REGMIRROR_TLS_CERT"}, DefaultText: "none: plain HTTP"},
			&cli.StringFlag{Name: "tls-key", Usage: "TLS private key file", EnvVars: []string{"REGMIRROR_TLS_KEY"}, DefaultText: "none"},
			logLevelFlag(),
			logFormatFlag(),
			&cli.StringFlag{
				Name:        "metrics-listen",
				Usage:       "also serve /metrics, /healthz and /readyz on this address, e.g. 127.0.0.1:9090",
				EnvVars:     []string{"REGMIRROR_METRICS_LISTEN"},
				DefaultText: "off",
			},
			&cli.StringFlag{
				Name: "cluster-self",
				// Set per pod from its IP (docs/cluster.md): one config
				// file serves every replica.
				Usage:       "this replica's URL as its peers reach it, e.g. http://10.0.0.1:5000; overrides cluster.self",
				EnvVars:     []string{"REGMIRROR_CLUSTER_SELF"},
				DefaultText: "cluster.self",
			},
		},
		Action: func(c *cli.Context) error {
			cfg, err := configFromCLI(c)
			if err != nil {
				return err
			}
			log, err := newLogger(c.App.ErrWriter, cfg.Log.level(), cfg.Log.format())
			if err != nil {
				return err
			}
			return serve(c.Context, cfg, log, func() (Config, error) { return configFromCLI(c) })
		},
	}
}

// configFromCLI reads the config file and lets flags and environment
// override it. Its error, a *configErrors, lists every problem.
func configFromCLI(c *cli.Context) (Config, error) {
	cfg, file, err := configFileFromCLI(c)
	if err != nil {
		return cfg, err
	}
	return cfg, file.err()
}

// configFileFromCLI is configFromCLI that returns the file with its
// problems, to which config check adds those of the files it names.
func configFileFromCLI(c *cli.Context) (Config, *configFile, error) {
	cfg, file, err := readConfig(c.String("config"))
	if err != nil {
		return cfg, file, err
	}
	overrides := map[string]*string{
		"listen":   &cfg.Listen,
		"data-dir": &cfg.DataDir,
		"tls-cert": &cfg.TLSCert,
		"tls-key":  &cfg.TLSKey,

		"metrics-listen": &cfg.MetricsListen,
		"cluster-self":   &cfg.Cluster.Self,
	}
	for flag, field := range overrides {
		if c.IsSet(flag) {
			*field = c.String(flag)
		}
	}
	if err := overrideLog(c, &cfg.Log); err != nil {
		return cfg, file, err
	}
	cfg = cfg.withDefaults()
	file.add(cfg.validate())
	return cfg, file, nil
}

// serve runs the daemon until ctx ends, then shuts down gracefully. On
// SIGHUP it reloads the configuration with load.
func serve(ctx context.Context, cfg Config, log *slog.Logger, load func() (Config, error)) error {
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", cfg.Listen, err)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	return serveReloading(ctx, ln, cfg, log, reloadSource{load: load, requests: hup})
}

// serveOn runs the daemon on an open listener; tests pass one on port 0.
func serveOn(ctx context.Context, ln net.Listener, cfg Config, log *slog.Logger) error {
	return serveReloading(ctx, ln, cfg, log, reloadSource{})
}

// serveReloading is serveOn with configuration reloads from src.
func serveReloading(ctx context.Context, ln net.Listener, cfg Config, log *slog.Logger, src reloadSource) error {
	protectFiles(cfg, log)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := registerDaemonMetrics(reg, cfg.DataDir); err != nil {
		ln.Close()
		return err
	}

	shared, err := openBucket(ctx, cfg, reg, log)
	if err != nil {
		ln.Close()
		return err
	}
	store, err := cache.Open(ctx, cache.Options{Dir: cfg.DataDir, Logger: log, Registerer: reg, Limits: cfg.Cache.limits(),
		Shared: sharedBlobsOf(shared)})
	if err != nil {
		ln.Close()
		return fmt.Errorf("opening cache in %s: %w", cfg.DataDir, err)
	}
	defer func() {
		if err := store.Close(); err != nil {
			log.Error("closing cache", "error", err)
		}
	}()

	if cfg.notifier, err = newNotifier(cfg, ln.Addr().String(), reg, log); err != nil {
		ln.Close()
		return err
	}
	remotes, newRemote, err := mirrorRemotes(cfg, log, reg)
	if err != nil {
		ln.Close()
		return err
	}
	hosted, hostedOpts, err := openHosted(store, cfg.Hosted, cfg.Auth, log)
	if err != nil {
		ln.Close()
		return err
	}
	if hostedOpts != nil && len(cfg.Hosted.Repositories) == 0 {
		log.Warn("hosted repositories are on but hosted.repositories lists none: every push is refused until it does")
	}
	pins, err := cfg.Cache.pins()
	if err != nil {
		ln.Close()
		return err
	}
	node, err := newClusterNode(cfg.Cluster, log)
	if err != nil {
		ln.Close()
		return err
	}
	janitor, err := newBucketJanitor(shared, cfg, &bucketKeep{cache: admin.EvictionCache{Store: store, Pins: pins}, log: log}, reg, log)
	if err != nil {
		ln.Close()
		return err
	}
	m, err := mirror.New(mirror.Options{Cache: store, Remotes: remotes, NewRemote: newRemote, Logger: log, Registerer: reg,
		Hosted: hostedOpts, MissLimits: mirror.MissLimits(cfg.MissLimits), Events: mirrorEventsOf(cfg.notifier),
		Inventory: admin.NewInventory(store, pins.Repos()), Peers: peersOf(node), Bucket: bucketOf(shared),
		HostedOwners: hostedOwnersOf(node)})
	if err != nil {
		ln.Close()
		return err
	}
	pf, err := newPrefetcher(m, reg, log)
	if err != nil {
		ln.Close()
		return err
	}
	if cfg.notifier != nil {
		pf.failures = cfg.notifier
	}
	ops, err := newOperator(cfg, store, m, pf, reg, log)
	if err != nil {
		ln.Close()
		return err
	}
	guarded, handler, err := guardEdge(cfg, ln, routes(guardPeers(node, m), ops.mux()), node, reg, log)
	if err != nil {
		ln.Close()
		return err
	}
	ln = guarded
	tlsConfig, listenerCert, err := listenerTLS(cfg, log)
	if err != nil {
		ln.Close()
		return err
	}
	srv := &http.Server{
		TLSConfig: tlsConfig,
		Handler:   handler,
		// The header has to arrive in time; a body's reads have an idle
		// deadline each (guardEdge). No ReadTimeout: it would cap whole
		// pushes, and on a request without a body it would cancel a long
		// download's context when it fires.
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	upkeep, err := startCacheUpkeep(store, cfg, m, pf, reg, log)
	if err != nil {
		ln.Close()
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return store.Run(gctx) })
	g.Go(func() error { return m.Run(gctx) }) // background refresh of hot tags
	g.Go(func() error { return runUploadSweeper(gctx, hosted, log) })
	g.Go(func() error { return upkeep(gctx) })
	g.Go(func() error { return cfg.notifier.Run(gctx) }) // webhooks; nil: none
	g.Go(func() error { return runCluster(gctx, node) }) // cluster members; nil: none
	g.Go(func() error { return runBucketJanitor(gctx, janitor) })
	if cfg.MetricsListen != "" {
		g.Go(func() error { return serveMetrics(gctx, cfg.MetricsListen, ops.metricsMux(), log) })
	}
	g.Go(func() error {
		return watchReloads(gctx, src, cfg, m, hostedUsers(hostedOpts), listenerCert, reg, log)
	})
	g.Go(func() error {
		log.Info("regmirror listening", "addr", ln.Addr().String(), "data_dir", cfg.DataDir, "tls", cfg.TLSCert != "")
		var err error
		if tlsConfig != nil {
			err = srv.ServeTLS(ln, "", "") // the certificate comes from tlsConfig
		} else {
			err = srv.Serve(ln)
		}
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	})
	g.Go(func() error {
		<-gctx.Done()
		log.Info("shutting down", "grace", shutdownGrace)
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(gctx), shutdownGrace)
		defer cancel()
		return srv.Shutdown(shutdownCtx)
	})
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// routes mounts the registry API beside the operational endpoints (see operatorMux).
func routes(m http.Handler, ops *http.ServeMux) http.Handler {
	ops.Handle("/v2/", m)
	ops.Handle("/v2", m)
	ops.Handle("/v1/search", m) // docker search MIRROR/term
	ops.Handle("/v1/_ping", m)
	ops.Handle("/api/v1/", m)
	return ops
}

// overrideLog applies --log-level and --log-format (or their environment
// variables) over the file's log section. A value that does not parse is
// a mistake on the command line, not in the file.
func overrideLog(c *cli.Context, log *LogConfig) error {
	if c.IsSet("log-level") {
		if _, err := parseLogLevel(c.String("log-level")); err != nil {
			return usageErrorf("--log-level: %w", err)
		}
		log.Level = c.String("log-level")
	}
	if c.IsSet("log-format") {
		if err := checkLogFormat(c.String("log-format")); err != nil {
			return usageErrorf("--log-format: %w", err)
		}
		log.Format = c.String("log-format")
	}
	return nil
}
