package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/internal/admin"
	"github.com/regmirror/regmirror/internal/registrytest"
)

// pullIndex pulls every platform of repo:tag as a multi-arch client does:
// the index by tag, each platform's manifest by digest, then every blob,
// checking each byte. It fails the test on any error.
func pullIndex(t *testing.T, base, repo, tag string, ix registrytest.Index) {
	t.Helper()
	if got := fetchOK(t, base+"/v2/"+repo+"/manifests/"+tag, manifestAccept); string(got) != string(ix.Bytes) {
		t.Fatalf("%s:%s: the index differs from the upstream's", repo, tag)
	}
	for _, img := range ix.Images {
		if got := fetchOK(t, base+"/v2/"+repo+"/manifests/"+img.Manifest.Digest.String(), manifestAccept); string(got) != string(img.ManifestBytes) {
			t.Fatalf("%s: the manifest of %s differs", repo, img.Manifest.Platform.Architecture)
		}
		for _, b := range img.Blobs() {
			if got := fetchOK(t, base+"/v2/"+repo+"/blobs/"+b.Digest.String(), ""); digest.FromBytes(got) != b.Digest {
				t.Fatalf("%s: blob %s arrived damaged", repo, b.Digest)
			}
		}
	}
}

// fetchOK GETs url and returns the body of a 200.
func fetchOK(t *testing.T, url, accept string) []byte {
	t.Helper()
	status, body := getBody(t, url, accept)
	if status != http.StatusOK {
		t.Fatalf("GET %s = %d: %s", url, status, body)
	}
	return body
}

func getBody(t *testing.T, url, accept string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

// A pinned multi-arch image survives an eviction pass that removes every
// unpinned blob, and all its platforms pull with the upstream stopped.
func TestPinnedIndexSurvivesEvictionAndPullsOffline(t *testing.T) {
	t.Parallel()
	hub, cfg := startHub(t)
	base, err := hub.PushIndex("library/base", "1", registrytest.ImageOptions{Layers: 2, LayerSize: 64 << 10, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	other, err := hub.PushImage("library/other", "1", registrytest.ImageOptions{Layers: 3, LayerSize: 64 << 10, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	// A budget the pinned image alone exceeds: eviction can only remove
	// everything else, and must say that it cannot reach its target.
	cfg.Cache = CacheConfig{MaxSize: Size(base.Size()), MinFreeDisk: ptr(Size(0)), Pin: []PinConfig{{Ref: "library/base:1"}}}
	logs := &logBuffer{}
	url := startDaemonLogging(t, cfg, slog.New(slog.NewTextHandler(logs, nil)))

	pullIndex(t, url, "library/base", "1", base)
	newClient(t, url).pullImage("library/other", "1", other)
	var pass admin.EvictReport
	if err := admin.NewClient(cfg.DataDir).Call(context.Background(), admin.EvictPath, struct{}{}, &pass, nil); err != nil {
		t.Fatal(err)
	}
	if !pass.PinsOver || pass.Pinned < base.Size() {
		t.Errorf("eviction pass %+v: want pins over budget with at least the %d bytes of the pinned blobs", pass, base.Size())
	}
	var stats admin.StatsReport
	if err := admin.NewClient(cfg.DataDir).Call(context.Background(), admin.StatsPath, struct{}{}, &stats, nil); err != nil {
		t.Fatal(err)
	}
	if stats.Blobs != len(base.Blobs()) || !stats.PinsOverBudget {
		t.Errorf("after eviction: %d blobs cached (pins over budget: %v), want only the pinned image's %d",
			stats.Blobs, stats.PinsOverBudget, len(base.Blobs()))
	}
	if !strings.Contains(logs.String(), "pinned content alone exceeds the cache budget") {
		t.Errorf("no warning that pins exceed the budget in the log:\n%s", logs)
	}
	if m := newClient(t, url).scrape(); m["regmirror_cache_pins_over_budget"] != 1 || m["regmirror_cache_pinned_bytes"] < float64(base.Size()) {
		t.Errorf("pins over budget = %v, pinned bytes = %v", m["regmirror_cache_pins_over_budget"], m["regmirror_cache_pinned_bytes"])
	}

	hub.Close()
	hub.Reset()
	pullIndex(t, url, "library/base", "1", base)
	if n := len(hub.Requests()); n != 0 {
		t.Fatalf("pulling the pinned image made %d upstream requests, want 0", n)
	}
	if status, _ := getBody(t, url+"/v2/library/other/blobs/"+other.Layers[0].Digest.String(), ""); status == http.StatusOK {
		t.Fatal("an unpinned blob survived the eviction pass")
	}
}
