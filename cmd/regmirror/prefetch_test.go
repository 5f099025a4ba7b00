package main

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/internal/statuspage"
)

// The configured prefetch list (3 images, one by tag pattern) is in the
// cache before any client asks: the first pulls make no upstream blob
// request. A one-off list with an image the upstream lacks reports it
// clearly, and fetches nothing twice.
func TestPrefetchListIsCachedBeforeAnyClientAsks(t *testing.T) {
	t.Parallel()
	hub, cfg := startHub(t)
	cfg.DataDir = shortTempDir(t)
	node, err := hub.PushIndex("library/node", "20", registrytest.ImageOptions{Seed: 1, LayerSize: 32 << 10})
	if err != nil {
		t.Fatal(err)
	}
	redis, err := hub.PushImage("library/redis", "7", registrytest.ImageOptions{Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	apiservers := map[string]registrytest.Image{}
	for i, tag := range []string{"v1.31.0", "v1.31.1", "v1.30.9"} {
		img, err := hub.PushImage("kube/apiserver", tag, registrytest.ImageOptions{Seed: uint64(10 + i)})
		if err != nil {
			t.Fatal(err)
		}
		apiservers[tag] = img
	}
	cfg.Prefetch.Images = []PrefetchImage{{Image: "docker.io/library/node:20"}, {Image: "redis:7"}, {Image: "docker.io/kube/apiserver:v1.31.*"}}
	url := startDaemonLogging(t, cfg, slog.New(slog.DiscardHandler))
	// The daemon answers only once its admin socket is bound and the
	// start-up run holds the prefetcher: the one-off run below waits for it.
	httpGet(t, url+"/healthz", "")

	list := filepath.Join(t.TempDir(), "images.txt")
	text := "# printed by an install tool\ndocker.io/library/node:20\n\nredis:7   # the cache\ndocker.io/library/nope:1\ndocker.io/kube/apiserver:v1.31.*\n"
	if err := os.WriteFile(list, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err := runCLI(t, "prefetch", "--data-dir", cfg.DataDir, "--file", list, "--json")
	if err == nil || !strings.Contains(err.Error(), "1 of 4 images could not be fetched") {
		t.Fatalf("prefetch of a list with a missing image: err %v, want 1 of 4 failed\n%s", err, stderr)
	}
	var report prefetchReport
	if err := json.Unmarshal([]byte(stdout), &report); err != nil {
		t.Fatalf("prefetch --json printed %q: %v", stdout, err)
	}
	if report.OK != 3 || report.Failed != 1 || len(report.Images) != 4 {
		t.Fatalf("report = %+v, want 3 ok and 1 failed", report)
	}
	if missing := report.Images[2]; missing.Image != "docker.io/library/nope:1" || !strings.Contains(missing.Error, "not found upstream") {
		t.Errorf("the missing image is reported as %+v, want docker.io/library/nope:1 not found upstream", missing)
	}
	if tags := strings.Join(report.Images[3].Tags, " "); tags != "v1.31.0 v1.31.1" {
		t.Errorf("the pattern v1.31.* fetched tags %q, want v1.31.0 v1.31.1", tags)
	}

	// Every listed blob went upstream exactly once, over both runs; the
	// tag the pattern does not match, not at all.
	var want []digest.Digest
	for _, b := range append(append(node.Blobs(), redis.Blobs()...), append(apiservers["v1.31.0"].Blobs(), apiservers["v1.31.1"].Blobs()...)...) {
		want = append(want, b.Digest)
	}
	for _, d := range want {
		if n := hub.BlobGets(d); n != 1 {
			t.Errorf("blob %s went upstream %d times, want once", d, n)
		}
	}
	if n := hub.BlobGetsTotal(); n != len(want) {
		t.Errorf("%d upstream blob requests, want %d", n, len(want))
	}
	m := newClient(t, url).scrape()
	if m[`regmirror_prefetch_images_total{result="ok"}`] != 6 || m[`regmirror_prefetch_images_total{result="failed"}`] != 1 {
		t.Errorf("prefetch images ok = %v, failed = %v; want 6 (start-up run and one-off) and 1",
			m[`regmirror_prefetch_images_total{result="ok"}`], m[`regmirror_prefetch_images_total{result="failed"}`])
	}

	var status statuspage.Report
	if err := json.Unmarshal(httpGet(t, url+"/status.json", ""), &status); err != nil {
		t.Fatal(err)
	}
	if pf := status.Prefetch; pf == nil || pf.Running || pf.Total != 4 || pf.Done != 4 || pf.Failed != 1 || pf.Failures != nil {
		t.Errorf("status page prefetch = %+v, want the last run: 4 images, 1 failed, unnamed to an anonymous client", pf)
	}

	hub.Reset()
	pullIndex(t, url, "library/node", "20", node)
	c := newClient(t, url)
	c.pullImage("library/redis", "7", redis)
	c.pullImage("kube/apiserver", "v1.31.0", apiservers["v1.31.0"])
	c.pullImage("kube/apiserver", "v1.31.1", apiservers["v1.31.1"])
	if n := hub.BlobGetsTotal(); n != 0 {
		t.Fatalf("the first client pulls made %d upstream blob requests, want 0", n)
	}
}
