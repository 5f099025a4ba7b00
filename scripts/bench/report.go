package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"
)

// verdict is one target from the issue and how the measurement compares.
type verdict struct {
	name, value, target string
	pass                bool
}

func (v verdict) word() string {
	if v.pass {
		return "PASS"
	}
	return "MISS"
}

// judge prints a verdict under its section and keeps it for the summary.
func (b *bench) judge(v verdict) {
	b.verdicts = append(b.verdicts, v)
	b.printf("   %-44s %-34s target %-16s %s\n", v.name, v.value, v.target, v.word())
}

func (b *bench) header() {
	b.printf("\nregmirror bench\n")
	b.printf("   machine   %s/%s, %d CPUs, %s, kernel %s, load average %s\n",
		runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version(), procLine("/proc/sys/kernel/osrelease"), loadAverage())
	b.printf("   daemon    %s (a subprocess; each run on a fresh data dir under %s)\n", b.cfg.bin, b.cfg.workDir)
	b.printf("   upstream  internal/registrytest on loopback: token auth, private repositories, the daemon holds the credentials\n")
	b.printf("   image     %s:%s, %s; clients pull linux/amd64 like dockerd (tag -> index -> manifest -> blobs, sha256 verified)\n",
		b.big.repo, b.big.tag, b.big.describe())
}

// describe says how large an image is and how it is split.
func (img image) describe() string {
	return fmt.Sprintf("%.0f MB in %d layers + config", float64(img.size)/1e6, img.layers)
}

// describe summarises what the upstream served for img.
func (t upstreamTraffic) describe(img image) string {
	var verdict string
	switch {
	case t.gets == 0:
		verdict = "all from the cache"
	case t.onceEach:
		verdict = "each blob once"
	default:
		verdict = "NOT each blob exactly once"
	}
	return fmt.Sprintf("%d blob GETs for %d blobs, %.1f MB = %.2fx the image (%s)",
		t.gets, len(img.blobs), float64(t.bytes)/1e6, float64(t.bytes)/float64(img.size), verdict)
}

func (b *bench) summary(took time.Duration) {
	b.printf("\nsummary (timings are this machine's, shared CPUs make them noisy)\n")
	for _, v := range b.verdicts {
		b.printf("   %-4s %-44s %s (target %s)\n", v.word(), v.name, v.value, v.target)
	}
	b.printf("\nbench took %s\n", took.Round(time.Second))
}

func procLine(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(data))
}

// loadAverage is the 1, 5 and 15 minute load: other work on the machine
// skews the numbers, so the report says how busy it was.
func loadAverage() string {
	fields := strings.Fields(procLine("/proc/loadavg"))
	if len(fields) < 3 {
		return "?"
	}
	return strings.Join(fields[:3], " ")
}
