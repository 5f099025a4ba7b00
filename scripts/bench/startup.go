package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/regmirror/regmirror/cache"
)

// The targets for a daemon starting on a cache of startupTargetBlobs blobs.
const (
	startupTarget       = 500 * time.Millisecond
	startupRSSTargetMiB = 100
	startupTargetBlobs  = 1_000_000
)

// reconciledLine is what the daemon logs when its background sweep of the
// cache is done; a daemon that sweeps before serving never logs it.
const reconciledLine = "cache reconcile finished"

// startupRun is one daemon started on a synthetic cache.
type startupRun struct {
	blobs    int
	generate time.Duration // making the synthetic cache
	startup  time.Duration // process start to the first 200 from /v2/
	ready    memory        // at that moment
	// swept is how long after the start the background reconcile ended, 0
	// when the daemon did not report one within the wait.
	swept time.Duration
	after memory // once the sweep ended (or the wait ran out)
	// peakAnon is the largest RssAnon sampled (every 20ms) from the start
	// until then.
	peakAnon int64
}

// startup measures how long the daemon takes to serve, and how much memory
// it holds, on caches of growing size, written by cache.WriteSynthetic.
func (b *bench) startup(ctx context.Context) error {
	b.printf("\n5. startup on a large cache: synthetic caches of 8-byte blobs (files and index rows written directly)\n")
	b.printf("   startup = process start to the first 200 from /v2/; RSS = VmRSS then; sweep = process start until the daemon\n")
	b.printf("   logged %q (its background check of every blob file; waiting up to %s); RSS after,\n", reconciledLine, b.cfg.sweepWait)
	b.printf("   peak = VmRSS then and VmHWM; anon = RssAnon, the daemon's own memory (the rest of RSS is the index's table\n")
	b.printf("   files mapped into it: page cache the kernel reclaims), peak sampled every 20ms\n\n")
	b.printf("   %9s %10s %9s %10s %9s %12s %12s %12s\n", "blobs", "generate", "startup", "RSS", "sweep", "RSS after", "peak RSS", "peak anon")
	var runs []startupRun
	for _, n := range b.cfg.startupBlobs {
		r, err := b.startupRun(ctx, n)
		if err != nil {
			return fmt.Errorf("startup on %d blobs: %w", n, err)
		}
		runs = append(runs, r)
		swept := "-"
		if r.swept > 0 {
			swept = fmt.Sprintf("%.2fs", r.swept.Seconds())
		}
		b.printf("   %9d %9.1fs %8.3fs %6.1f MiB %9s %8.1f MiB %8.1f MiB %8.1f MiB\n", n, r.generate.Seconds(), r.startup.Seconds(),
			mib(r.ready.rss), swept, mib(r.after.rss), mib(r.after.hwm), mib(r.peakAnon))
	}
	b.printf("\n")
	last := runs[len(runs)-1]
	b.judge(verdict{
		name:   fmt.Sprintf("startup, %d cached blobs", last.blobs),
		value:  fmt.Sprintf("%.3fs", last.startup.Seconds()),
		target: fmt.Sprintf("< %.1fs at %d", startupTarget.Seconds(), startupTargetBlobs),
		pass:   last.startup < startupTarget && last.blobs >= startupTargetBlobs,
	})
	b.judge(verdict{
		name:   fmt.Sprintf("RSS when serving starts, %d cached blobs", last.blobs),
		value:  fmt.Sprintf("%.1f MiB", mib(last.ready.rss)),
		target: fmt.Sprintf("< %d MiB at %d", startupRSSTargetMiB, startupTargetBlobs),
		pass:   last.ready.rss < startupRSSTargetMiB<<20 && last.blobs >= startupTargetBlobs,
	})
	// The peak comes later, in the background sweep; it includes the
	// index's table files mapped into the daemon (RssFile, page cache),
	// which a sweep over every row touches.
	b.judge(verdict{
		name:   fmt.Sprintf("peak RSS, %d cached blobs", last.blobs),
		value:  fmt.Sprintf("%.1f MiB", mib(last.after.hwm)),
		target: fmt.Sprintf("< %d MiB at %d", startupRSSTargetMiB, startupTargetBlobs),
		pass:   last.after.hwm < startupRSSTargetMiB<<20 && last.blobs >= startupTargetBlobs,
	})
	b.judge(verdict{
		name:   fmt.Sprintf("peak anon RSS, %d cached blobs", last.blobs),
		value:  fmt.Sprintf("%.1f MiB", mib(last.peakAnon)),
		target: fmt.Sprintf("< %d MiB at %d", startupRSSTargetMiB, startupTargetBlobs),
		pass:   last.peakAnon < startupRSSTargetMiB<<20 && last.blobs >= startupTargetBlobs,
	})
	return nil
}

func (b *bench) startupRun(ctx context.Context, n int) (startupRun, error) {
	r := startupRun{blobs: n}
	d, err := newDaemon(b.cfg.workDir)
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(d.dir)
	start := time.Now()
	if err := cache.WriteSynthetic(ctx, d.dataDir(), "docker.io/library/synthetic", n); err != nil {
		return r, err
	}
	r.generate = time.Since(start)
	if err := d.start(ctx, b.cfg.bin, b.up.URL(), upstreamUser, upstreamPassword); err != nil {
		return r, err
	}
	defer d.stop()
	s := startSampler(d.pid(), 20*time.Millisecond)
	defer s.stop()
	r.startup = d.ready.Sub(d.started)
	if r.ready, err = readMemory(d.pid()); err != nil {
		return r, err
	}
	if d.waitLog(ctx, reconciledLine, b.cfg.sweepWait) {
		r.swept = time.Since(d.started)
	}
	r.after, err = readMemory(d.pid())
	r.peakAnon = max(s.peakAnon(), r.ready.anon, r.after.anon)
	return r, err
}

// waitLog polls the daemon's log for a line containing s, for up to wait.
func (d *daemon) waitLog(ctx context.Context, s string, wait time.Duration) bool {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(wait)
	for {
		data, _ := os.ReadFile(filepath.Join(d.dir, "regmirror.log"))
		if strings.Contains(string(data), s) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-deadline:
			return false
		case <-tick.C:
		}
	}
}
