package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/regmirror/regmirror/internal/registrytest"
)

// The performance targets the report holds the numbers against.
const (
	coldTarget   = 0.90 // of pulling directly from the upstream
	warmTarget   = 0.80 // of a plain file server over the same files
	rssTargetMiB = 150
	// wallTarget is how much slower than one client the concurrent cold
	// clients may be on a throttled upstream and still count as "close":
	// they share one fetch of each blob, so ideally they take the same time.
	wallTarget = 1.25
)

// bench runs the measurements against one upstream and prints as it goes.
type bench struct {
	cfg        config
	out        io.Writer
	up         *registrytest.Registry
	big, small image
	verdicts   []verdict
}

func newBench(cfg config, out io.Writer) (*bench, error) {
	if cfg.workDir == "" {
		cfg.workDir = os.TempDir()
	}
	fmt.Fprintf(out, "generating images (%d MiB in %d layers, %d MiB in %d layers)...\n",
		cfg.sizeMiB, cfg.layers, cfg.smallSizeMiB, cfg.smallLayers)
	up, big, small, err := startUpstream(cfg)
	if err != nil {
		return nil, err
	}
	return &bench{cfg: cfg, out: out, up: up, big: big, small: small}, nil
}

func (b *bench) close() { b.up.Close() }

func (b *bench) printf(format string, args ...any) { fmt.Fprintf(b.out, format, args...) }

func (b *bench) startDaemon(ctx context.Context) (*daemon, error) {
	return startDaemon(ctx, b.cfg.bin, b.cfg.workDir, b.up.URL(), upstreamUser, upstreamPassword)
}

// directPuller pulls from the upstream with the mirror's credentials.
func (b *bench) directPuller() *puller {
	return newPuller(b.up.URL(), b.cfg.concurrency).withCredentials(upstreamUser, upstreamPassword)
}

// throughputRound is one round of the cold and warm comparisons.
type throughputRound struct {
	direct, cold, warm, file phase
	coldTraffic              upstreamTraffic
}

// phase is one pull's throughput and what it cost in CPU time.
type phase struct {
	mbps float64
	// wall is the download's duration; daemon and self are the CPU time
	// used meanwhile by regmirror and by this process (upstream and client,
	// and in the file server's run the file server).
	wall, daemon, self time.Duration
	bytes              int64
}

// throughput compares cold pulls through a fresh mirror with direct pulls,
// and warm pulls through that mirror with a plain file server.
func (b *bench) throughput(ctx context.Context) error {
	b.printf("\n1. cold pull: through a fresh regmirror vs directly from the upstream\n")
	b.printf("2. warm pull: through regmirror (cache hit) vs a plain Go file server over the same blob files\n")
	b.printf("   one client, %d blobs at a time; MB/s = blob bytes / time from the first blob request to the last blob verified\n\n",
		b.cfg.concurrency)
	b.printf("   %-6s %12s %12s %12s %12s   %s\n", "round", "direct", "cold mirror", "warm mirror", "file server", "upstream during cold pull")
	var rounds []throughputRound
	for i := range b.cfg.rounds {
		r, err := b.throughputRound(ctx)
		if err != nil {
			return fmt.Errorf("throughput round %d: %w", i+1, err)
		}
		rounds = append(rounds, r)
		b.printf("   %-6d %7.0f MB/s %7.0f MB/s %7.0f MB/s %7.0f MB/s   %s\n",
			i+1, r.direct.mbps, r.cold.mbps, r.warm.mbps, r.file.mbps, r.coldTraffic.describe(b.big))
	}
	direct := medianPhase(rounds, func(r throughputRound) phase { return r.direct })
	cold := medianPhase(rounds, func(r throughputRound) phase { return r.cold })
	warm := medianPhase(rounds, func(r throughputRound) phase { return r.warm })
	file := medianPhase(rounds, func(r throughputRound) phase { return r.file })
	b.printf("   %-6s %7.0f MB/s %7.0f MB/s %7.0f MB/s %7.0f MB/s\n\n", "median", direct.mbps, cold.mbps, warm.mbps, file.mbps)
	b.cpuTable([]string{"direct", "cold mirror", "warm mirror", "file server"}, []phase{direct, cold, warm, file})
	b.printf("   a cold pull through the mirror costs %.1fx the CPU of a direct one (it hashes, writes and re-reads every\n"+
		"   byte too); with upstream, mirror, client and any other work on the same %d CPUs, that CPU, not the link,\n"+
		"   sets the loopback cold number. Section 1b puts a link in the way, as in real use.\n\n",
		perGB(cold.daemon+cold.self, cold.bytes)/perGB(direct.self, direct.bytes), runtime.NumCPU())
	b.judge(verdict{
		name:   "cold pull through the mirror vs direct",
		value:  fmt.Sprintf("%.0f%% (%.0f vs %.0f MB/s)", 100*cold.mbps/direct.mbps, cold.mbps, direct.mbps),
		target: fmt.Sprintf(">= %.0f%%", 100*coldTarget),
		pass:   cold.mbps >= coldTarget*direct.mbps,
	})
	b.judge(verdict{
		name:   "regmirror CPU per GB, warm pull",
		value:  fmt.Sprintf("%.2f s", perGB(warm.daemon, warm.bytes)),
		target: fmt.Sprintf("<= %.2f s", warmCPUTarget),
		pass:   perGB(warm.daemon, warm.bytes) <= warmCPUTarget,
	})
	b.judge(verdict{
		name:   "warm pull through the mirror vs file server",
		value:  fmt.Sprintf("%.0f%% (%.0f vs %.0f MB/s)", 100*warm.mbps/file.mbps, warm.mbps, file.mbps),
		target: fmt.Sprintf(">= %.0f%%", 100*warmTarget),
		pass:   warm.mbps >= warmTarget*file.mbps,
	})
	return nil
}

// cpuTable shows where the CPU time of the median runs went, per GB pulled:
// with every process on the same few CPUs, a pull that needs more CPU per
// byte is slower however fast each part is.
func (b *bench) cpuTable(names []string, phases []phase) {
	b.printf("   CPU and wall seconds per GB pulled, median runs (this machine has %d CPUs)\n", runtime.NumCPU())
	b.printf("   %-12s %10s %17s %8s %10s %11s\n", "", "regmirror", "upstream+client", "total", "wall", "CPUs busy")
	for i, p := range phases {
		daemon := "-"
		if p.daemon > 0 {
			daemon = fmt.Sprintf("%.2f", perGB(p.daemon, p.bytes))
		}
		b.printf("   %-12s %10s %17.2f %8.2f %10.2f %11.2f\n", names[i], daemon,
			perGB(p.self, p.bytes), perGB(p.daemon+p.self, p.bytes), perGB(p.wall, p.bytes),
			(p.daemon+p.self).Seconds()/p.wall.Seconds())
	}
	b.printf("   (file server: its CPU is in upstream+client, as it runs in this process)\n\n")
}

// measure runs pull while metering CPU time; daemonPID 0 means no daemon.
func measure(daemonPID int, pull func() (pullResult, error)) (phase, error) {
	meter, err := startCPUMeter(daemonPID)
	if err != nil {
		return phase{}, err
	}
	r, err := pull()
	if err != nil {
		return phase{}, err
	}
	p := phase{mbps: r.mbps(), wall: r.download, bytes: r.bytes}
	p.daemon, p.self, err = meter.stop()
	return p, err
}

func (b *bench) throughputRound(ctx context.Context) (throughputRound, error) {
	var r throughputRound
	var err error
	r.direct, err = measure(0, func() (pullResult, error) { return pullOnce(ctx, b.directPuller(), b.big) })
	if err != nil {
		return r, fmt.Errorf("direct pull: %w", err)
	}

	d, err := b.startDaemon(ctx)
	if err != nil {
		return r, err
	}
	defer d.remove()
	b.up.Reset()
	mirrored := func() (pullResult, error) { return pullOnce(ctx, newPuller(d.url, b.cfg.concurrency), b.big) }
	if r.cold, err = measure(d.pid(), mirrored); err != nil {
		return r, fmt.Errorf("cold pull through regmirror: %w\n%s", err, d.logTail())
	}
	r.coldTraffic = measureUpstream(b.up, b.big)
	if r.warm, err = measure(d.pid(), mirrored); err != nil {
		return r, fmt.Errorf("warm pull through regmirror: %w\n%s", err, d.logTail())
	}

	fs, err := startFileServer(filepath.Join(d.dataDir(), "blobs"))
	if err != nil {
		return r, err
	}
	defer fs.close()
	p := newPuller(fs.url, b.cfg.concurrency)
	defer p.close()
	r.file, err = measure(0, func() (pullResult, error) { return p.download(ctx, b.big.repo, b.big.blobs) })
	if err != nil {
		return r, fmt.Errorf("pull from the file server: %w", err)
	}
	return r, nil
}

// medianPhase picks the run with the median throughput among the rounds
// (the lower middle one for an even count), keeping its CPU times.
func medianPhase(rounds []throughputRound, of func(throughputRound) phase) phase {
	ps := make([]phase, len(rounds))
	for i, r := range rounds {
		ps[i] = of(r)
	}
	slices.SortFunc(ps, func(a, b phase) int { return cmp.Compare(a.mbps, b.mbps) })
	return ps[(len(ps)-1)/2]
}

// pullOnce pulls img with p and drops p's connections.
func pullOnce(ctx context.Context, p *puller, img image) (pullResult, error) {
	defer p.close()
	return p.pull(ctx, img.repo, img.tag, amd64)
}

// mbps is the download phase's throughput in MB/s (10^6 bytes).
func (r pullResult) mbps() float64 { return float64(r.bytes) / 1e6 / r.download.Seconds() }

// crowd is several clients pulling the same image at once.
type crowd struct {
	results []pullResult
	wall    time.Duration // from the first client's start to the last one's end
	bytes   int64         // all clients together
}

func (c crowd) mbps() float64 { return float64(c.bytes) / 1e6 / c.wall.Seconds() }

// slowest is the longest single pull, resolving included.
func (c crowd) slowest() time.Duration {
	var worst time.Duration
	for _, r := range c.results {
		worst = max(worst, r.total())
	}
	return worst
}

// pullTogether starts n clients pulling img from url at the same moment.
func pullTogether(ctx context.Context, url string, img image, n, concurrency int) (crowd, error) {
	return together(ctx, n, func(ctx context.Context, _ int) (pullResult, error) {
		return pullOnce(ctx, newPuller(url, concurrency), img)
	})
}

// together runs n clients at the same moment, each one call of client
// with its number, 0 to n-1.
func together(ctx context.Context, n int, client func(ctx context.Context, i int) (pullResult, error)) (crowd, error) {
	c := crowd{results: make([]pullResult, n)}
	g, ctx := errgroup.WithContext(ctx)
	start := time.Now()
	for i := range n {
		g.Go(func() error {
			r, err := client(ctx, i)
			c.results[i] = r
			return err
		})
	}
	err := g.Wait()
	c.wall = time.Since(start)
	for _, r := range c.results {
		c.bytes += r.bytes
	}
	return c, err
}

// memory measures the daemon's resident set while clients pull at once,
// cold and then warm.
func (b *bench) memory(ctx context.Context) error {
	b.printf("\n3. daemon memory: %d clients pull the %s image at once from one fresh regmirror, cold, then warm\n",
		b.cfg.clients, b.big.describe())
	b.printf("   peak = VmHWM from /proc/<pid>/status (reset between phases via clear_refs); max sampled = VmRSS polled every 20ms\n\n")
	d, err := b.startDaemon(ctx)
	if err != nil {
		return err
	}
	defer d.remove()
	idle, err := readMemory(d.pid())
	if err != nil {
		return err
	}
	b.printf("   %-5s %10s %12s %12s %16s   %s\n", "phase", "peak RSS", "max sampled", "wall", "all clients", "upstream")
	b.printf("   %-5s %6.1f MiB %8.1f MiB\n", "idle", mib(idle.hwm), mib(idle.rss))
	var peak int64
	for _, phase := range []string{"cold", "warm"} {
		b.up.Reset()
		m, c, err := b.watchCrowd(ctx, d, b.big, b.cfg.clients)
		if err != nil {
			return fmt.Errorf("%s pulls: %w\n%s", phase, err, d.logTail())
		}
		peak = max(peak, m.hwm)
		b.printf("   %-5s %6.1f MiB %8.1f MiB %11.2fs %11.0f MB/s   %s\n",
			phase, mib(m.hwm), mib(m.rss), c.wall.Seconds(), c.mbps(), measureUpstream(b.up, b.big).describe(b.big))
	}
	b.printf("\n")
	b.judge(verdict{
		name:   fmt.Sprintf("daemon peak RSS, %d clients", b.cfg.clients),
		value:  fmt.Sprintf("%.1f MiB", mib(peak)),
		target: fmt.Sprintf("< %d MiB", rssTargetMiB),
		pass:   peak < rssTargetMiB<<20,
	})
	return nil
}

// watchCrowd runs the clients while watching the daemon's memory. The
// returned memory holds the phase's VmHWM and the largest VmRSS sampled.
func (b *bench) watchCrowd(ctx context.Context, d *daemon, img image, clients int) (memory, crowd, error) {
	if err := resetPeak(d.pid()); err != nil {
		return memory{}, crowd{}, fmt.Errorf("resetting the peak RSS: %w", err)
	}
	s := startSampler(d.pid(), 20*time.Millisecond)
	c, err := pullTogether(ctx, d.url, img, clients, b.cfg.concurrency)
	maxRSS, _, serr := s.stop()
	if err != nil {
		return memory{}, c, err
	}
	if serr != nil {
		return memory{}, c, serr
	}
	m, err := readMemory(d.pid())
	return memory{rss: maxRSS, hwm: m.hwm}, c, err
}

// coalescing shows that concurrent cold clients share one upstream fetch of
// each blob: on a throttled upstream they finish about when one client would.
func (b *bench) coalescing(ctx context.Context) error {
	rate := int64(b.cfg.throttleMBps * 1e6)
	b.printf("\n4. coalescing: cold pulls of the smaller %s image (so this takes seconds), upstream throttled to %.0f MB/s\n",
		b.small.describe(), b.cfg.throttleMBps)
	b.printf("   the link alone needs %.1fs for the image; each run uses its own fresh regmirror\n\n",
		float64(b.small.size)/float64(rate))
	b.up.SetThrottle(rate)
	defer b.up.SetThrottle(0)

	b.printf("   %-10s %9s %9s   %s\n", "clients", "wall", "slowest", "upstream")
	var walls []time.Duration
	once := true
	for _, n := range []int{1, b.cfg.clients} {
		c, traffic, err := b.coldCrowd(ctx, b.small, n)
		if err != nil {
			return err
		}
		walls = append(walls, c.wall)
		once = once && traffic.onceEach && traffic.bytes == b.small.size
		b.printf("   %-10d %8.2fs %8.2fs   %s\n", n, c.wall.Seconds(), c.slowest().Seconds(), traffic.describe(b.small))
	}
	b.printf("\n")
	b.judge(verdict{
		name:   fmt.Sprintf("throttled upstream bytes, %d clients", b.cfg.clients),
		value:  "each blob fetched once",
		target: "image size once",
		pass:   once,
	})
	if !once {
		b.verdicts[len(b.verdicts)-1].value = "some blob fetched more than once"
	}
	ratio := walls[1].Seconds() / walls[0].Seconds()
	b.judge(verdict{
		name:   fmt.Sprintf("throttled wall time, %d clients vs 1", b.cfg.clients),
		value:  fmt.Sprintf("%.2fx (%.2fs vs %.2fs)", ratio, walls[1].Seconds(), walls[0].Seconds()),
		target: fmt.Sprintf("<= %.2fx (close)", wallTarget),
		pass:   ratio <= wallTarget,
	})
	return nil
}

// coldCrowd runs n clients at once against a fresh daemon and reports what
// the upstream served meanwhile.
func (b *bench) coldCrowd(ctx context.Context, img image, n int) (crowd, upstreamTraffic, error) {
	d, err := b.startDaemon(ctx)
	if err != nil {
		return crowd{}, upstreamTraffic{}, err
	}
	defer d.remove()
	b.up.Reset()
	c, err := pullTogether(ctx, d.url, img, n, b.cfg.concurrency)
	if err != nil {
		return c, upstreamTraffic{}, fmt.Errorf("%d cold clients: %w\n%s", n, err, d.logTail())
	}
	return c, measureUpstream(b.up, img), nil
}

// perGB is d per 10^9 bytes of n.
func perGB(d time.Duration, n int64) float64 { return d.Seconds() / (float64(n) / 1e9) }

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// linkBound repeats the cold comparison with the upstream's bandwidth
// limited, as it is in real use: then the link, not the CPUs shared by
// upstream, mirror and client, is the bottleneck, and the ratio shows what
// streaming through the mirror costs a pull.
func (b *bench) linkBound(ctx context.Context) error {
	rate := int64(b.cfg.linkMBps * 1e6)
	b.printf("\n1b. cold pull on a bandwidth-limited upstream: the smaller %s image, upstream limited to %.0f MB/s\n",
		b.small.describe(), b.cfg.linkMBps)
	b.printf("   the link alone needs %.2fs for the image; one client, %d blobs at a time; both columns get the same\n"+
		"   link (the registry paces 32 KiB writes with timers, so on a busy machine it delivers less than the limit)\n\n",
		float64(b.small.size)/float64(rate), b.cfg.concurrency)
	b.up.SetThrottle(rate)
	defer b.up.SetThrottle(0)

	b.printf("   %-6s %12s %12s\n", "round", "direct", "cold mirror")
	var direct, cold []float64
	for i := range b.cfg.rounds {
		dr, err := pullOnce(ctx, b.directPuller(), b.small)
		if err != nil {
			return fmt.Errorf("direct pull: %w", err)
		}
		c, _, err := b.coldCrowd(ctx, b.small, 1)
		if err != nil {
			return err
		}
		direct, cold = append(direct, dr.mbps()), append(cold, c.results[0].mbps())
		b.printf("   %-6d %7.0f MB/s %7.0f MB/s\n", i+1, direct[i], cold[i])
	}
	d, c := median(direct), median(cold)
	b.printf("   %-6s %7.0f MB/s %7.0f MB/s\n\n", "median", d, c)
	b.judge(verdict{
		name:   "link-bound cold pull, mirror vs direct",
		value:  fmt.Sprintf("%.0f%% (%.0f vs %.0f MB/s)", 100*c/d, c, d),
		target: fmt.Sprintf(">= %.0f%%", 100*coldTarget),
		pass:   c >= coldTarget*d,
	})
	return nil
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
