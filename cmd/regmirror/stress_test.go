package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/internal/admin"
	"github.com/regmirror/regmirror/internal/registrytest"
)

// stressOptions size a stress run: images repositories, the i-th (from 1)
// with layers layers of i*layerSize bytes, pulled and removed by loops
// goroutines for duration, under a budget of three times the largest image.
type stressOptions struct {
	duration  time.Duration
	images    int
	layers    int
	layerSize int64
	loops     int
}

// stressReport is what a stress run measured.
type stressReport struct {
	pulls, removals, forcedEvictions int64
	bytesVerified                    int64
	failures                         []string
	budget, largestImage             int64
	// maxBlobs is the most the blob files took at once; maxDisk adds the
	// downloads in flight (the temp directory).
	maxBlobs, maxDisk int64
	verifiedBlobs     int
}

// runStress pulls images through a daemon over loopback from many loops at
// once while removing them and forcing eviction every second, verifying
// every byte, and checks at the end that the index matches the disk.
func runStress(t *testing.T, o stressOptions) stressReport {
	t.Helper()
	hub := registrytest.New(t, registrytest.Options{})
	images := make([]registrytest.Image, o.images)
	var rep stressReport
	for i := range images {
		img, err := hub.PushImage(fmt.Sprintf("stress/img%d", i), "1",
			registrytest.ImageOptions{Layers: o.layers, LayerSize: int64(i+1) * o.layerSize, Seed: uint64(100 + i)})
		if err != nil {
			t.Fatal(err)
		}
		images[i] = img
		var size int64
		for _, b := range img.Blobs() {
			size += b.Size
		}
		rep.largestImage = max(rep.largestImage, size)
	}
	rep.budget = 3 * rep.largestImage
	noFloor := Size(0)
	dir := t.TempDir()
	cfg := Config{DataDir: dir, Cache: CacheConfig{MaxSize: Size(rep.budget), MinFreeDisk: &noFloor},
		Upstreams: []UpstreamConfig{{Host: "docker.io", URL: hub.URL()}}, ListedUpstreamsOnly: true,
		// Every loop pulls cold, from one address: many clients' worth of misses.
		MissLimits: MissLimitsConfig{PerClientRate: 1e6, PerClientBurst: 1e6, TotalRate: 1e6, TotalBurst: 1e6}}
	ctx, stop := context.WithCancel(context.Background())
	done := runDaemon(t, ctx, cfg)
	base := "http://" + done.addr

	var wg sync.WaitGroup
	var mu sync.Mutex
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(rep.failures) < 20 {
			rep.failures = append(rep.failures, fmt.Sprintf(format, args...))
		}
	}
	var pulls, removals, evictions, verified atomic.Int64
	deadline := time.Now().Add(o.duration)
	for loop := range o.loops {
		wg.Go(func() {
			for n := 0; time.Now().Before(deadline); n++ {
				img := images[(loop+n)%len(images)]
				repo := fmt.Sprintf("stress/img%d", (loop+n)%len(images))
				b, err := stressPull(base, repo, img)
				verified.Add(b)
				if err != nil {
					fail("loop %d: %v", loop, err)
					continue
				}
				pulls.Add(1)
				if err := runCache(dir, "prune", "--repo", repo); err != nil {
					fail("loop %d: prune %s: %v", loop, repo, err)
					continue
				}
				removals.Add(1)
			}
		})
	}
	wg.Go(func() { // eviction forced every second, down to half the budget
		for tick := time.NewTicker(time.Second); time.Now().Before(deadline); <-tick.C {
			if err := runCache(dir, "prune", "--max-size", strconv.FormatInt(rep.budget/2, 10)); err != nil {
				fail("forced eviction: %v", err)
			}
			evictions.Add(1)
		}
	})
	sampled := make(chan struct{})
	go func() { // disk usage, sampled until the loops end
		defer close(sampled)
		for time.Now().Before(deadline) {
			blobs, tmp := treeBytes(filepath.Join(dir, "blobs")), treeBytes(filepath.Join(dir, "tmp"))
			mu.Lock()
			rep.maxBlobs, rep.maxDisk = max(rep.maxBlobs, blobs), max(rep.maxDisk, blobs+tmp)
			mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	wg.Wait()
	<-sampled
	for i, img := range images { // the end state to verify holds every image
		b, err := stressPull(base, fmt.Sprintf("stress/img%d", i), img)
		verified.Add(b)
		if err != nil {
			fail("final pull: %v", err)
		}
	}
	stop()
	if err := <-done.err; err != nil {
		t.Fatalf("daemon: %v", err)
	}
	rep.pulls, rep.removals, rep.forcedEvictions, rep.bytesVerified = pulls.Load(), removals.Load(), evictions.Load(), verified.Load()
	rep.verifiedBlobs = verifyStopped(t, dir).Checked
	return rep
}

// check fails t unless the run verified everything and stayed in budget.
func (r stressReport) check(t *testing.T) {
	t.Helper()
	t.Logf("stress: %d pulls (%d MiB verified), %d removals, %d forced evictions, %d verification failures; "+
		"budget %d KiB (3x the largest image, %d KiB); most on disk: blobs %d KiB, blobs and downloads in flight %d KiB; "+
		"final cache verify: %d blobs, index == disk",
		r.pulls, r.bytesVerified>>20, r.removals, r.forcedEvictions, len(r.failures),
		r.budget>>10, r.largestImage>>10, r.maxBlobs>>10, r.maxDisk>>10, r.verifiedBlobs)
	for _, f := range r.failures {
		t.Error(f)
	}
	if r.pulls == 0 || r.removals == 0 || r.forcedEvictions == 0 {
		t.Fatal("the run did too little to prove anything")
	}
	// Downloads in flight count against the budget before they land, so the
	// blob files exceed it only by what was committed since the last pass.
	if r.maxBlobs > r.budget+r.largestImage {
		t.Errorf("blob files reached %d bytes, over the budget %d plus an image in flight", r.maxBlobs, r.budget)
	}
}

// stressPull pulls an image as dockerd does and verifies every byte; it
// returns the blob bytes verified.
func stressPull(base, repo string, img registrytest.Image) (int64, error) {
	status, _, err := fetch(base, http.MethodHead, "/v2/"+repo+"/manifests/1")
	if err != nil || status != http.StatusOK {
		return 0, fmt.Errorf("HEAD %s:1 = %d, %v", repo, status, err)
	}
	status, body, err := fetch(base, http.MethodGet, "/v2/"+repo+"/manifests/"+img.Manifest.Digest.String())
	if err != nil || status != http.StatusOK || !bytes.Equal(body, img.ManifestBytes) {
		return 0, fmt.Errorf("GET manifest of %s = %d, %v (bytes equal: %v)", repo, status, err, bytes.Equal(body, img.ManifestBytes))
	}
	var verified int64
	for _, b := range img.Blobs() {
		status, body, err := fetch(base, http.MethodGet, "/v2/"+repo+"/blobs/"+b.Digest.String())
		if err != nil || status != http.StatusOK || int64(len(body)) != b.Size || digest.FromBytes(body) != b.Digest {
			return verified, fmt.Errorf("GET blob %s of %s = %d, %v: %d bytes hashing to %s", b.Digest, repo, status, err, len(body), digest.FromBytes(body))
		}
		verified += b.Size
	}
	return verified, nil
}

func fetch(base, method, path string) (int, []byte, error) {
	req, err := http.NewRequest(method, base+path, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// runCache runs `regmirror cache <args> --data-dir dir`, which goes through
// the running daemon's admin socket. Runs are serialised (see appRuns); the
// daemon still sees the commands interleaved with the pulls.
func runCache(dir string, args ...string) error {
	var out bytes.Buffer
	app := newApp()
	app.Writer, app.ErrWriter = &out, &out
	argv := append([]string{"regmirror", "cache", args[0], "--data-dir", dir}, args[1:]...)
	if err := runAppLocked(context.Background(), app, argv); err != nil {
		return fmt.Errorf("%w: %s", err, out.String())
	}
	return nil
}

// treeBytes adds up the sizes of the files under dir.
func treeBytes(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return nil // files come and go while the daemon works
		}
		if fi, err := e.Info(); err == nil {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// daemonRun is a daemon started by runDaemon: its address, and serveOn's
// result once ctx ends.
type daemonRun struct {
	addr string
	err  chan error
}

// runDaemon serves cfg on loopback until ctx ends.
func runDaemon(t *testing.T, ctx context.Context, cfg Config) daemonRun {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	run := daemonRun{addr: ln.Addr().String(), err: make(chan error, 1)}
	go func() { run.err <- serveOn(ctx, ln, cfg.withDefaults(), slog.New(slog.DiscardHandler)) }()
	waitFor(t, "http://"+run.addr+"/healthz")
	// The admin socket is bound beside the listener, not before it: the
	// forced evictions need it.
	for i := 0; ; i++ {
		if _, err := os.Stat(filepath.Join(cfg.DataDir, admin.SocketName)); err == nil {
			return run
		}
		if i == 500 {
			t.Fatal("the admin socket never appeared")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A few seconds of the stress run, in every `make test`: ten loops pulling
// and removing five images under a budget of three times the largest, with
// eviction forced every second; not one byte may be wrong, and the index
// must match the disk at the end. `make stress` runs it for minutes.
func TestStressSmoke(t *testing.T) {
	t.Parallel()
	duration := 3 * time.Second
	if d, err := time.ParseDuration(os.Getenv("REGMIRROR_STRESS_DURATION")); err == nil {
		duration = d
	}
	runStress(t, stressOptions{duration: duration, images: 5, layers: 3, layerSize: 64 << 10, loops: 10}).check(t)
}
