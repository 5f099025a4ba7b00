package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/internal/admin"
)

// cacheAdmin runs the cache commands, in the daemon through its admin
// socket or on a store the CLI opened itself.
type cacheAdmin interface {
	Stats(ctx context.Context) (admin.StatsReport, error)
	Prune(ctx context.Context, req admin.PruneRequest, progress func(admin.Progress)) (admin.PruneReport, error)
	Verify(ctx context.Context, req admin.VerifyRequest, progress func(admin.Progress)) (admin.VerifyReport, error)
	Evict(ctx context.Context) (admin.EvictReport, error)
	Ls(ctx context.Context, req admin.LsRequest) (admin.LsReport, error)
}

var (
	_ cacheAdmin = (*admin.Ops)(nil)
	_ cacheAdmin = (*admin.Client)(nil)
)

// newCacheOps is the cache operations on store under cfg's budget and pins.
func newCacheOps(store *cache.Store, cfg Config, opts admin.Options) (*admin.Ops, error) {
	pins, err := cfg.pins()
	if err != nil {
		return nil, err
	}
	opts.Budget, opts.Pins = cfg.Cache.eviction(), pins
	return admin.New(store, opts), nil
}

func jsonFlag() cli.Flag {
	return &cli.BoolFlag{Name: "json", Usage: "print the report as JSON, for scripts"}
}

func cacheCommand() *cli.Command {
	return &cli.Command{
		Name:  "cache",
		Usage: "inspect, trim and check the cache (through the running daemon, or directly when it is stopped)",
		Subcommands: []*cli.Command{
			{
				Name:   "stats",
				Usage:  "size against the budget, content counts, traffic since the daemon started, top repositories",
				Flags:  []cli.Flag{dataDirFlag(), configFlag(), jsonFlag()},
				Action: cacheAction(runStats),
			},
			{
				Name:  "prune",
				Usage: "remove images by size, age or repository (see --dry-run)",
				Flags: []cli.Flag{dataDirFlag(), configFlag(), jsonFlag(),
					&cli.StringFlag{Name: "max-size", Usage: "remove least recently used images until the cache holds at most `SIZE` (e.g. 20GiB)"},
					&cli.DurationFlag{Name: "older-than", Usage: "remove images not used for `DURATION` (e.g. 720h; 0s: all of them)"},
					&cli.StringSliceFlag{Name: "repo", Usage: "only repositories matching `GLOB` ('library/*' one level, 'myorg/**' any depth); alone, removes all of them"},
					&cli.BoolFlag{Name: "dry-run", Usage: "print what would go and the bytes freed; change nothing"},
				},
				Action: cacheAction(runPrune),
			},
			{
				Name:   "evict",
				Usage:  "run an eviction pass now: bring the cache within its budget, sparing pinned images",
				Flags:  []cli.Flag{dataDirFlag(), configFlag(), jsonFlag()},
				Action: cacheAction(runEvict),
			},
			{
				Name:  "verify",
				Usage: "re-hash cached blobs; report and remove corrupt ones",
				Flags: []cli.Flag{dataDirFlag(), configFlag(), jsonFlag(),
					&cli.IntFlag{Name: "sample", Usage: "check `N` blobs picked at random instead of all"},
				},
				Action: cacheAction(runVerify),
			},
			lsCommand(),
		},
	}
}

// cacheAction runs a cache command against the daemon when one answers on
// the admin socket, and otherwise on the store opened directly.
func cacheAction(run func(c *cli.Context, ops cacheAdmin, out *output) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		cfg, err := configFromCLI(c)
		if err != nil {
			return err
		}
		out := &output{w: c.App.Writer, progress: c.App.ErrWriter, json: c.Bool("json")}
		out.source = "from the running daemon"
		err = run(c, admin.NewClient(cfg.DataDir), out)
		if !errors.Is(err, admin.ErrNoDaemon) {
			return err
		}
		log := slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: slog.LevelWarn}))
		store, err := openStopped(c.Context, cfg.DataDir, log)
		if err != nil {
			return err
		}
		ops, err := newCacheOps(store, cfg, admin.Options{})
		if err != nil {
			store.Close()
			return err
		}
		out.source = "opened directly: the daemon is not running"
		return errors.Join(run(c, ops, out), store.Close())
	}
}

// openStopped opens the cache of a daemon that is not running. It refuses a
// directory without a cache, rather than creating one where a typo points.
func openStopped(ctx context.Context, dataDir string, log *slog.Logger) (*cache.Store, error) {
	if _, err := os.Stat(filepath.Join(dataDir, "index")); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no cache in %s (set --data-dir or REGMIRROR_DATA_DIR)", dataDir)
	}
	store, err := cache.Open(ctx, cache.Options{Dir: dataDir, Logger: log})
	if errors.Is(err, cache.ErrLocked) {
		return nil, fmt.Errorf("the cache in %s is locked by another process, and no daemon answers on %s: "+
			"is a regmirror daemon still starting, or running as another user (the socket is private to its user)? %w",
			dataDir, filepath.Join(dataDir, admin.SocketName), err)
	}
	if err != nil {
		return nil, err
	}
	// No daemon sweeps it in the background: make the index and the files
	// agree before the command reads them.
	if err := store.Reconcile(ctx); err != nil {
		store.Close()
		return nil, err
	}
	return store, nil
}

func runStats(c *cli.Context, ops cacheAdmin, out *output) error {
	r, err := ops.Stats(c.Context)
	if err != nil {
		return err
	}
	return out.report(r, func(w io.Writer) error { return admin.WriteStats(w, r, out.source) })
}

func runPrune(c *cli.Context, ops cacheAdmin, out *output) error {
	req := admin.PruneRequest{Repos: c.StringSlice("repo"), DryRun: c.Bool("dry-run")}
	if c.IsSet("older-than") {
		// An explicit 0s means everything: it must not read as "no age".
		age := c.Duration("older-than")
		if age < 0 {
			return fmt.Errorf("--older-than %s: must not be negative", age)
		}
		req.OlderThan = &age
	}
	if s := c.String("max-size"); s != "" {
		size, err := ParseSize(s)
		if err != nil {
			return usageErrorf("--max-size: %w", err)
		}
		req.MaxSize = int64(size)
	}
	if req.MaxSize <= 0 && req.OlderThan == nil && len(req.Repos) == 0 {
		return usageErrorf("say what to prune: --max-size, --older-than and/or --repo")
	}
	r, err := ops.Prune(c.Context, req, out.showProgress)
	if err != nil {
		return err
	}
	return out.report(r, func(w io.Writer) error { return admin.WritePrune(w, r) })
}

func runEvict(c *cli.Context, ops cacheAdmin, out *output) error {
	r, err := ops.Evict(c.Context)
	if err != nil {
		return err
	}
	return out.report(r, func(w io.Writer) error { return admin.WriteEvict(w, r) })
}

func runVerify(c *cli.Context, ops cacheAdmin, out *output) error {
	r, err := ops.Verify(c.Context, admin.VerifyRequest{Sample: c.Int("sample")}, out.showProgress)
	if err != nil {
		return err
	}
	if err := out.report(r, func(w io.Writer) error { return admin.WriteVerify(w, r) }); err != nil {
		return err
	}
	if len(r.Corrupt) > 0 {
		// Scripts learn of corruption from the exit status too.
		return fmt.Errorf("cache verify: %d %w (and removed)", len(r.Corrupt), errCorrupt)
	}
	return nil
}

// output writes a command's report, human-readable or JSON, and its
// progress on the error stream.
type output struct {
	w, progress io.Writer
	json        bool
	source      string // where the numbers come from
	last        admin.Progress
}

func (o *output) report(v any, human func(io.Writer) error) error {
	if o.json {
		enc := json.NewEncoder(o.w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	return human(o.w)
}

// Progress is shown for operations of at least largeOperation steps, about
// progressSteps times.
const (
	largeOperation = 1000
	progressSteps  = 20
)

func (o *output) showProgress(p admin.Progress) {
	if p.Total < largeOperation {
		return
	}
	step := p.Total / progressSteps
	if p.Done == p.Total || p.Phase != o.last.Phase || p.Done/step != o.last.Done/step {
		fmt.Fprintf(o.progress, "%s: %d/%d\n", p.Phase, p.Done, p.Total)
	}
	o.last = p
}
