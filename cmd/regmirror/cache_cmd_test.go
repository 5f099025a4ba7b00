package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/urfave/cli/v2"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/eviction"
	"github.com/regmirror/regmirror/internal/admin"
	"github.com/regmirror/regmirror/internal/registrytest"
)

// runCLI runs regmirror with args and returns what it printed.
func runCLI(t testing.TB, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	app := newApp()
	app.Writer, app.ErrWriter = &out, &errOut
	app.ExitErrHandler = func(*cli.Context, error) {} // keep os.Exit out of tests
	err = runAppLocked(context.Background(), app, append([]string{"regmirror"}, args...))
	return out.String(), errOut.String(), err
}

// cliJSON runs a cache command with --json and decodes its report.
func cliJSON[R any](t testing.TB, args ...string) R {
	t.Helper()
	stdout, stderr, err := runCLI(t, append(args, "--json")...)
	if err != nil {
		t.Fatalf("regmirror %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	var r R
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("regmirror %s printed %q: %v", strings.Join(args, " "), stdout, err)
	}
	return r
}

func TestCacheCommandsWithDaemonRunningAndStopped(t *testing.T) {
	t.Parallel()
	hub := registrytest.New(t, registrytest.Options{})
	var sizes = map[string]int64{}
	for i, repo := range []string{"library/alpine", "library/busybox"} {
		img, err := hub.PushImage(repo, "1", registrytest.ImageOptions{Layers: 2, LayerSize: 64 << 10, Seed: uint64(i + 1)})
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range img.Blobs() {
			sizes[repo] += b.Size
		}
	}
	dir := shortTempDir(t)
	cfg := Config{DataDir: dir, Upstreams: []UpstreamConfig{{Host: "docker.io", URL: hub.URL()}},
		Cache: CacheConfig{MaxSize: 64 << 20}}.withDefaults()
	var logs strings.Builder
	url, stop := startDaemon(t, cfg, &syncWriter{w: &logs})

	pullImage(t, url, "library/alpine", "1")
	pullImage(t, url, "library/busybox", "1")
	pullImage(t, url, "library/alpine", "1") // from the cache this time
	// The server reads the next request on a kept-alive connection only
	// after the previous handler returned, having counted its bytes: this
	// ping orders the last blob's counters before the stats below.
	httpGet(t, url+"/v2/", "")

	if fi, err := os.Stat(filepath.Join(dir, admin.SocketName)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket: %v, %v; want mode 0600", fi, err)
	}
	st := cliJSON[admin.StatsReport](t, "cache", "stats", "--data-dir", dir)
	if st.Blobs != 6 || st.Manifests != 2 || st.Tags != 2 || st.Bytes != sizes["library/alpine"]+sizes["library/busybox"] {
		t.Errorf("stats = %d blobs, %d manifests, %d tags, %d bytes; want 6, 2, 2, %d",
			st.Blobs, st.Manifests, st.Tags, st.Bytes, sizes["library/alpine"]+sizes["library/busybox"])
	}
	if st.Budget != 64<<20 || len(st.TopRepos) != 2 || st.TopRepos[0].Bytes < st.TopRepos[1].Bytes {
		t.Errorf("budget %d, top repositories %+v", st.Budget, st.TopRepos)
	}
	if tr := st.Traffic; tr == nil || tr.CacheBytes != sizes["library/alpine"] ||
		tr.UpstreamBytes != sizes["library/alpine"]+sizes["library/busybox"] || tr.Hits < 3 || tr.Misses < 6 {
		t.Errorf("traffic = %+v; want %d bytes from the cache, %d from upstream, at least 3 hits and 6 misses",
			st.Traffic, sizes["library/alpine"], sizes["library/alpine"]+sizes["library/busybox"])
	}
	human, _, err := runCLI(t, "cache", "stats", "--data-dir", dir)
	if err != nil || !strings.Contains(human, "from the running daemon") || !strings.Contains(human, "docker.io/library/busybox") {
		t.Errorf("stats printed %q, %v", human, err)
	}

	dry := cliJSON[admin.PruneReport](t, "cache", "prune", "--data-dir", dir, "--repo", "library/busybox", "--dry-run")
	if len(dry.Manifests) != 1 || len(dry.Blobs) != 3 || dry.Bytes != sizes["library/busybox"] {
		t.Errorf("dry run = %+v; want busybox's manifest and 3 blobs, %d bytes", dry, sizes["library/busybox"])
	}
	if after := cliJSON[admin.StatsReport](t, "cache", "stats", "--data-dir", dir); after.Blobs != 6 || after.Manifests != 2 {
		t.Errorf("a dry run changed the cache: %d blobs, %d manifests", after.Blobs, after.Manifests)
	}
	pruned := cliJSON[admin.PruneReport](t, "cache", "prune", "--data-dir", dir, "--repo", "library/busybox")
	assertSamePrune(t, dry, pruned)

	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, admin.SocketName)); !os.IsNotExist(err) {
		t.Errorf("admin socket left behind: %v", err)
	}

	// Stopped: the CLI opens the store itself.
	st = cliJSON[admin.StatsReport](t, "cache", "stats", "--data-dir", dir)
	if st.Blobs != 3 || st.Bytes != sizes["library/alpine"] || st.Traffic != nil {
		t.Errorf("direct stats = %d blobs, %d bytes, traffic %v; want 3, %d, none", st.Blobs, st.Bytes, st.Traffic, sizes["library/alpine"])
	}
	human, _, err = runCLI(t, "cache", "stats", "--data-dir", dir)
	if err != nil || !strings.Contains(human, "opened directly") {
		t.Errorf("direct stats printed %q, %v", human, err)
	}
	v := cliJSON[admin.VerifyReport](t, "cache", "verify", "--data-dir", dir)
	if v.Checked != 3 || len(v.Corrupt) != 0 {
		t.Errorf("verify = %+v, want 3 sound blobs", v)
	}
}

func TestCacheCommandsWhenLockedWithoutDaemon(t *testing.T) {
	t.Parallel()
	dir := shortTempDir(t)
	store, err := cache.Open(context.Background(), cache.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	_, _, err = runCLI(t, "cache", "stats", "--data-dir", dir)
	if err == nil || !strings.Contains(err.Error(), "locked by another process") || !strings.Contains(err.Error(), admin.SocketName) {
		t.Errorf("stats on a locked store without a daemon: %v", err)
	}
	_, _, err = runCLI(t, "cache", "stats", "--data-dir", filepath.Join(dir, "typo"))
	if err == nil || !strings.Contains(err.Error(), "no cache in") {
		t.Errorf("stats on a directory without a cache: %v", err)
	}
}

func TestPruneDryRunReportsWhatPruneRemoves(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		req  admin.PruneRequest
		want []string // repositories whose images go
	}{
		{name: "older than", req: admin.PruneRequest{OlderThan: new(150 * time.Minute)}, want: []string{"app0", "app1"}},
		{name: "older than zero is everything", req: admin.PruneRequest{OlderThan: new(time.Duration(0))}, want: []string{"app0", "app1", "app2", "app3"}},
		{name: "max size", req: admin.PruneRequest{MaxSize: 600 << 10}, want: []string{"app0", "app1"}},
		{name: "repository", req: admin.PruneRequest{Repos: []string{"library/app2"}}, want: []string{"app2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newBudgetEnv(t, eviction.Config{})
			images := map[string]registrytest.Image{}
			for i := range 4 {
				repo := fmt.Sprintf("library/app%d", i)
				images[repo] = e.push(t, repo, uint64(i+1), 2, layerSize)
				e.pull(t, repo)
				e.clock.Advance(time.Hour)
			}
			ops := admin.New(e.store, admin.Options{Now: e.clock.Now})
			ctx := context.Background()
			before, err := e.store.Inventory(ctx)
			if err != nil {
				t.Fatal(err)
			}

			dryReq := tt.req
			dryReq.DryRun = true
			dry, err := ops.Prune(ctx, dryReq, nil)
			if err != nil {
				t.Fatal(err)
			}
			if after, _ := e.store.Inventory(ctx); len(after.Blobs) != len(before.Blobs) || len(after.Manifests) != len(before.Manifests) {
				t.Fatalf("the dry run removed content")
			}
			var wantBlobs []digest.Digest
			for _, name := range tt.want {
				for _, b := range images["library/"+name].Blobs() {
					wantBlobs = append(wantBlobs, b.Digest)
				}
			}
			if got := blobDigests(dry); !sameSet(got, wantBlobs) {
				t.Errorf("dry run removes %d blobs, want those of %v (%d)", len(got), tt.want, len(wantBlobs))
			}

			pruned, err := ops.Prune(ctx, tt.req, nil)
			if err != nil {
				t.Fatal(err)
			}
			assertSamePrune(t, dry, pruned)
			after, err := e.store.Inventory(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(after.Blobs) != len(before.Blobs)-len(wantBlobs) || len(after.Manifests) != len(before.Manifests)-len(tt.want) {
				t.Errorf("after the prune: %d blobs, %d manifests; want %d, %d", len(after.Blobs), len(after.Manifests),
					len(before.Blobs)-len(wantBlobs), len(before.Manifests)-len(tt.want))
			}
		})
	}
}

// assertSamePrune checks that a prune removed exactly what its dry run said.
func assertSamePrune(t *testing.T, dry, done admin.PruneReport) {
	t.Helper()
	if !dry.DryRun || done.DryRun {
		t.Errorf("dry_run flags: %v then %v", dry.DryRun, done.DryRun)
	}
	var dryManifests, realManifests []digest.Digest
	for _, m := range dry.Manifests {
		dryManifests = append(dryManifests, m.Digest)
	}
	for _, m := range done.Manifests {
		realManifests = append(realManifests, m.Digest)
	}
	if !slices.Equal(dryManifests, realManifests) || !slices.Equal(blobDigests(dry), blobDigests(done)) ||
		dry.Bytes != done.Bytes || len(done.Skipped) != 0 {
		t.Errorf("the dry run said %v and %v (%d bytes); the prune removed %v and %v (%d bytes), skipped %v",
			dryManifests, blobDigests(dry), dry.Bytes, realManifests, blobDigests(done), done.Bytes, done.Skipped)
	}
}

func blobDigests(r admin.PruneReport) []digest.Digest {
	var ds []digest.Digest
	for _, b := range r.Blobs {
		ds = append(ds, b.Digest)
	}
	return ds
}

func sameSet(a, b []digest.Digest) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// shortTempDir is a temporary data directory with a path short enough for
// a unix socket (108 bytes on Linux), which t.TempDir's may not be.
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "rm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
