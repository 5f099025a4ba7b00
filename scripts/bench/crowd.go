package main

import (
	"context"
	"fmt"
	"path/filepath"
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
	floor, err := b.fileServerCrowd(ctx, filepath.Join(d.dataDir(), "blobs"))
	if err != nil {
		return err
	}
	b.printf("   the same clients, blobs only, from a plain Go file server (http.FileServer, sendfile) in its own process\n")
	b.printf("   over the daemon's blob files: %.3f s/GB of its CPU. That is what sending the bytes costs this machine's\n", floor)
	b.printf("   kernel with no mirror work at all; regmirror's own work per GB is the difference.\n\n")
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

// fileServerCrowd has the crowd download the small image's blobs from a
// plain file server in a process of its own and returns that process's
// CPU seconds per GB sent.
func (b *bench) fileServerCrowd(ctx context.Context, blobRoot string) (float64, error) {
	fs, err := startFileServerProcess(ctx, blobRoot)
	if err != nil {
		return 0, err
	}
	defer fs.close()
	meter, err := startCPUMeter(fs.pid())
	if err != nil {
		return 0, err
	}
	c, err := downloadTogether(ctx, fs.url, b.small, b.cfg.crowdClients, b.cfg.concurrency)
	if err != nil {
		return 0, fmt.Errorf("%d clients from the file server: %w", b.cfg.crowdClients, err)
	}
	serverCPU, _, err := meter.stop()
	if err != nil {
		return 0, err
	}
	return perGB(serverCPU, c.bytes), nil
}
