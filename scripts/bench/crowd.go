package main

import (
	"context"
	"fmt"
	"time"
)

// The targets of the crowd section: the daemon's peak memory and CPU per GB
// while many clients pull from its cache at once.
const (
	crowdRSSTargetMiB = 64
	warmCPUTarget     = 0.15 // CPU seconds per GB served
)

// crowd measures what serving a warm cache costs when many clients pull at
// once: the daemon's peak memory and its CPU time per GB sent.
func (b *bench) crowd(ctx context.Context) error {
	b.printf("\n6. warm crowd: %d clients pull the %s image at once from a warm regmirror (%d blobs at a time each)\n",
		b.cfg.crowdClients, b.small.describe(), b.cfg.concurrency)
	b.printf("   peak = VmHWM (reset after warming); CPU = the daemon's user+system time during the pulls, per GB sent\n\n")
	d, err := b.startDaemon(ctx)
	if err != nil {
		return err
	}
	defer d.remove()
	if _, err := pullOnce(ctx, newPuller(d.url, b.cfg.concurrency), b.small); err != nil {
		return fmt.Errorf("warming the cache: %w\n%s", err, d.logTail())
	}
	meter, err := startCPUMeter(d.pid())
	if err != nil {
		return err
	}
	m, c, err := b.watchCrowd(ctx, d, b.small, b.cfg.crowdClients)
	if err != nil {
		return fmt.Errorf("%d warm clients: %w\n%s", b.cfg.crowdClients, err, d.logTail())
	}
	daemonCPU, _, err := meter.stop()
	if err != nil {
		return err
	}
	cpu := perGB(daemonCPU, c.bytes)
	b.printf("   %10s %12s %10s %14s %12s\n", "peak RSS", "max sampled", "wall", "all clients", "daemon CPU")
	b.printf("   %6.1f MiB %8.1f MiB %9.2fs %9.0f MB/s %7.3f s/GB\n\n",
		mib(m.hwm), mib(m.rss), c.wall.Seconds(), c.mbps(), cpu)
	b.judge(verdict{
		name:   fmt.Sprintf("daemon peak RSS, %d warm clients", b.cfg.crowdClients),
		value:  fmt.Sprintf("%.1f MiB", mib(m.hwm)),
		target: fmt.Sprintf("< %d MiB", crowdRSSTargetMiB),
		pass:   m.hwm < crowdRSSTargetMiB<<20,
	})
	b.judge(verdict{
		name:   "daemon CPU per GB served warm",
		value:  fmt.Sprintf("%.3f s (%.1f GB in %s)", cpu, float64(c.bytes)/1e9, c.wall.Round(time.Millisecond)),
		target: fmt.Sprintf("<= %.2f s", warmCPUTarget),
		pass:   cpu <= warmCPUTarget,
	})
	return nil
}
