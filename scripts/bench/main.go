// Command bench measures regmirror against an in-process, Docker-Hub-like
// upstream (internal/registrytest, token auth with credentials) over
// loopback and prints a report: cold pull throughput through the mirror
// against pulling directly from the upstream, warm pull throughput against a
// plain Go file server over the same blob files, the daemon's peak memory
// while several clients pull at once, how a throttled upstream is shared
// by concurrent cold clients (one upstream fetch per blob), the daemon's
// memory and CPU per GB while 200 clients pull from its cache at once, and
// how long it takes to start, and how much memory it holds, on synthetic
// caches of 10, 100,000 and 1,000,000 blobs (cache.WriteSynthetic); and,
// when asked for (-sections scaleout), one daemon against a cluster of
// replicas, without and with a bucket they share (on versitygw):
// aggregate throughput, CPU per GB, the upstream's GETs per blob, the cost
// of a miss forwarded to the blob's owner, each replica's memory, and a
// replica that joins with an empty disk and fills from the bucket.
//
// The daemon is the real `regmirror serve` binary (-bin or REGMIRROR_BIN),
// each measurement on a fresh data directory. Nothing here asserts: targets
// are printed next to the numbers. scripts/bench.sh runs it (`make bench`).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// config is the benchmark's shape; the defaults are what `make bench` runs.
type config struct {
	bin     string
	workDir string
	// The large image: about 1 GB in a handful of layers.
	sizeMiB int
	layers  int
	// The small image for the throttled run, so it takes seconds.
	smallSizeMiB int
	smallLayers  int
	throttleMBps float64
	// linkMBps limits the upstream in the link-bound cold comparison.
	linkMBps float64
	// clients pull at once in the memory and throttled runs; concurrency is
	// each client's parallel blob downloads (dockerd's default is 3).
	clients     int
	concurrency int
	rounds      int
	// sections are the parts of the report to run, e.g. "throughput".
	sections   string
	cpuProfile string
	// startupBlobs are the synthetic cache sizes of the startup section;
	// sweepWait is how long it waits for the daemon's background sweep.
	startupBlobs []int
	sweepWait    time.Duration
	// crowdClients pull the small image at once, warm, in the crowd section.
	crowdClients int
	// replicas form the cluster of the scaleout section; versitygw is the
	// S3 server of its shared bucket (default: found as scripts/install-deps.sh
	// installs it).
	replicas  int
	versitygw string
	// serveFiles, when set, makes this process a plain file server over
	// that blob root (the crowd section runs one).
	serveFiles string
}

func parseFlags() config {
	var c config
	flag.StringVar(&c.bin, "bin", os.Getenv("REGMIRROR_BIN"), "regmirror binary (default $REGMIRROR_BIN)")
	flag.StringVar(&c.workDir, "work-dir", "", "where the daemons' fresh data directories go (default: the system temp dir)")
	flag.IntVar(&c.sizeMiB, "size-mib", 1024, "size of the large image's layers together, MiB")
	flag.IntVar(&c.layers, "layers", 8, "layers of the large image")
	flag.IntVar(&c.smallSizeMiB, "small-size-mib", 160, "size of the throttled run's image, MiB")
	flag.IntVar(&c.smallLayers, "small-layers", 5, "layers of the throttled run's image")
	flag.Float64Var(&c.linkMBps, "link-mbps", 100, "upstream bandwidth in the link-bound cold comparison, MB/s")
	flag.Float64Var(&c.throttleMBps, "throttle-mbps", 20, "upstream bandwidth in the throttled run, MB/s (10^6 bytes)")
	flag.IntVar(&c.clients, "clients", 4, "clients pulling at once in the memory and throttled runs")
	flag.IntVar(&c.concurrency, "concurrency", 3, "blobs each client downloads at once (dockerd: 3)")
	flag.IntVar(&c.rounds, "rounds", 3, "repetitions of the cold and warm throughput runs (the median is reported)")
	flag.StringVar(&c.sections, "sections", "default", "comma-separated parts of the report to run, of "+
		strings.Join(allSections, ", ")+`; "default" stands for `+strings.Join(defaultSections, ","))
	flag.StringVar(&c.cpuProfile, "cpuprofile", "", "write this process's CPU profile (upstream and clients) to a file")
	flag.Func("startup-blobs", "comma-separated synthetic cache sizes of the startup section (default 10,100000,1000000)", func(v string) error {
		c.startupBlobs = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				return fmt.Errorf("not a blob count: %q", f)
			}
			c.startupBlobs = append(c.startupBlobs, n)
		}
		return nil
	})
	c.startupBlobs = []int{10, 100_000, 1_000_000}
	flag.DurationVar(&c.sweepWait, "sweep-wait", 5*time.Minute, "how long the startup section waits for the daemon's background sweep of the cache")
	flag.IntVar(&c.crowdClients, "crowd-clients", 200, "clients pulling the small image at once, warm, in the crowd section")
	flag.IntVar(&c.replicas, "replicas", 3, "replicas of the cluster the scaleout section compares with one daemon")
	flag.StringVar(&c.versitygw, "versitygw", "", "versitygw, the S3 server of the scaleout section's shared bucket (default: $(go env GOPATH)/bin/versitygw, else PATH)")
	flag.StringVar(&c.serveFiles, serveFilesFlag, "", "serve this blob root as a plain file server (used by the crowd section)")
	flag.Parse()
	return c
}

func main() {
	cfg := parseFlags()
	if cfg.serveFiles != "" {
		if err := serveFiles(cfg.serveFiles); err != nil {
			fmt.Fprintln(os.Stderr, "bench: file server:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, cfg, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg config, out io.Writer) error {
	if cfg.bin == "" {
		return fmt.Errorf("no regmirror binary: pass -bin or set REGMIRROR_BIN")
	}
	if cfg.cpuProfile != "" {
		f, err := os.Create(cfg.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	steps, err := sections(cfg.sections)
	if err != nil {
		return err
	}
	start := time.Now()
	b, err := newBench(cfg, out)
	if err != nil {
		return err
	}
	defer b.close()
	b.header()
	for _, step := range steps {
		if err := b.section(step)(ctx); err != nil {
			return err
		}
	}
	b.summary(time.Since(start))
	return nil
}

// allSections are the parts of the report, in the order they run.
var allSections = []string{"throughput", "link", "memory", "coalescing", "crowd", "startup", "scaleout"}

// defaultSections run when -sections is not given. scaleout is left out:
// with the default rounds (three setups, one with versitygw) it takes
// about four minutes on a busy 2-CPU machine, so scripts/bench.sh asks for
// it by name.
var defaultSections = []string{"throughput", "link", "memory", "coalescing", "crowd", "startup"}

// sections parses -sections, keeping the report's order; "default"
// stands for defaultSections.
func sections(list string) ([]string, error) {
	want := map[string]bool{}
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		if name == "default" {
			for _, s := range defaultSections {
				want[s] = true
			}
			continue
		}
		if !slices.Contains(allSections, name) {
			return nil, fmt.Errorf("-sections: no section %q (have %s)", name, strings.Join(allSections, ", "))
		}
		want[name] = true
	}
	return slices.DeleteFunc(slices.Clone(allSections), func(s string) bool { return !want[s] }), nil
}

func (b *bench) section(name string) func(context.Context) error {
	return map[string]func(context.Context) error{
		"throughput": b.throughput,
		"link":       b.linkBound,
		"memory":     b.memory,
		"coalescing": b.coalescing,
		"crowd":      b.crowd,
		"startup":    b.startup,
		"scaleout":   b.scaleout,
	}[name]
}
