package main

import (
	"log/slog"
	"math"
	"runtime"
	"strings"
	"testing"

	"github.com/regmirror/regmirror/internal/registrytest"
)

// A cold pull moves the miss and upstream-bytes counters by exactly what
// was pulled, a warm pull the hit and cache-bytes counters, and the warm
// pull sends nothing upstream.
func TestMetricsCountColdAndWarmPullsExactly(t *testing.T) {
	t.Parallel()
	hub, cfg := startHub(t)
	const budget = 64 << 20
	cfg.Cache.MaxSize = budget
	img, err := hub.PushImage("library/node", "10", registrytest.ImageOptions{Layers: 2, LayerSize: 20 << 10, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	blobs := float64(len(img.Blobs()))
	var size float64
	for _, b := range img.Blobs() {
		size += float64(b.Size)
	}
	c := newClient(t, startDaemonLogging(t, cfg, slog.New(slog.DiscardHandler)))

	before := c.scrape()
	c.pullImage("library/node", "10", img)
	cold := c.scrape()
	c.pullImage("library/node", "10", img)
	warm := c.scrape()

	lookup := func(kind, result string) string {
		return `regmirror_cache_lookups_total{kind="` + kind + `",result="` + result + `",upstream="docker.io"}`
	}
	requests := func(route, method string) string {
		return `regmirror_http_requests_total{method="` + method + `",route="` + route + `",status="2xx"}`
	}
	const (
		fromCache    = `regmirror_served_bytes_total{source="cache"}`
		fromUpstream = `regmirror_served_bytes_total{source="upstream"}`
	)
	tests := []struct {
		metric           string
		coldDelta        float64
		warmDelta        float64
		gaugeAfterPulls  bool // compare the value itself, not a delta
		wantAfterEachRun float64
	}{
		{metric: lookup("tag", "miss"), coldDelta: 1},
		{metric: lookup("tag", "hit"), warmDelta: 1},
		// Revalidating the tag fetched its manifest: the GET by digest is a hit.
		{metric: lookup("manifest", "hit"), coldDelta: 1, warmDelta: 1},
		{metric: lookup("blob", "miss"), coldDelta: blobs},
		{metric: lookup("blob", "hit"), warmDelta: blobs},
		{metric: fromUpstream, coldDelta: size},
		{metric: fromCache, warmDelta: size},
		{metric: requests("blob", "GET"), coldDelta: blobs, warmDelta: blobs},
		{metric: requests("manifest", "HEAD"), coldDelta: 1, warmDelta: 1},
		{metric: requests("manifest", "GET"), coldDelta: 1, warmDelta: 1},
		{metric: `regmirror_http_request_duration_seconds{route="blob"}#count`, coldDelta: blobs, warmDelta: blobs},
		// Each blob GET's first byte, timed by where it came from.
		{metric: `regmirror_blob_first_byte_seconds{result="miss"}#count`, coldDelta: blobs},
		{metric: `regmirror_blob_first_byte_seconds{result="hit"}#count`, warmDelta: blobs},
		{metric: "regmirror_cache_coalesced_waiters_total"},
		{metric: "regmirror_cache_digest_mismatches_total"},
		{metric: "regmirror_cache_blobs", gaugeAfterPulls: true, wantAfterEachRun: blobs},
		{metric: "regmirror_cache_size_bytes", gaugeAfterPulls: true, wantAfterEachRun: size},
		{metric: "regmirror_cache_budget_bytes", gaugeAfterPulls: true, wantAfterEachRun: budget},
		{metric: "regmirror_eviction_blobs_total"}, // well within the budget
		{metric: "regmirror_eviction_freed_bytes_total"},
	}
	for _, tt := range tests {
		if tt.gaugeAfterPulls {
			if cold[tt.metric] != tt.wantAfterEachRun || warm[tt.metric] != tt.wantAfterEachRun {
				t.Errorf("%s = %v after the cold pull, %v after the warm one; want %v", tt.metric, cold[tt.metric], warm[tt.metric], tt.wantAfterEachRun)
			}
			continue
		}
		if got := cold[tt.metric] - before[tt.metric]; got != tt.coldDelta {
			t.Errorf("cold pull moved %s by %v, want %v", tt.metric, got, tt.coldDelta)
		}
		if got := warm[tt.metric] - cold[tt.metric]; got != tt.warmDelta {
			t.Errorf("warm pull moved %s by %v, want %v", tt.metric, got, tt.warmDelta)
		}
	}
	if got, want := sumFamily(warm, "regmirror_upstream_requests_total"), sumFamily(cold, "regmirror_upstream_requests_total"); got != want || want == 0 {
		t.Errorf("upstream requests: %v after the cold pull, %v after the warm one; want some, then no more", want, got)
	}
	// Everything read from the upstream: the blobs, and the manifests,
	// tokens and errors besides them; nothing on the warm pull.
	const fetched = `regmirror_upstream_fetched_bytes_total{upstream="docker.io"}`
	if got := cold[fetched] - before[fetched]; got < size+float64(len(img.ManifestBytes)) {
		t.Errorf("cold pull moved %s by %v, want at least the %v bytes of the blobs and the manifest", fetched, got, size+float64(len(img.ManifestBytes)))
	}
	if got := warm[fetched] - cold[fetched]; got != 0 {
		t.Errorf("warm pull moved %s by %v, want 0", fetched, got)
	}
	// Every family the dashboard and the docs rely on is exposed once traffic
	// has touched it.
	for _, family := range []string{
		"go_goroutines", "process_resident_memory_bytes", "process_cpu_seconds_total",
		"regmirror_upstream_request_duration_seconds", "regmirror_upstream_breaker_state",
		"regmirror_upstream_fetches_in_flight", "regmirror_cache_downloads_in_flight",
		"regmirror_eviction_blobs_total", "regmirror_eviction_freed_bytes_total",
		"regmirror_cache_coalesced_waiters_total", "regmirror_cache_digest_mismatches_total",
	} {
		if !hasFamily(warm, family) {
			t.Errorf("/metrics has no %s", family)
		}
	}
}

// regmirror_build_info names this build, and the disk gauges measure the
// filesystem of data_dir.
func TestMetricsBuildInfoAndDisk(t *testing.T) {
	t.Parallel()
	_, cfg := startHub(t)
	c := newClient(t, startDaemonLogging(t, cfg, slog.New(slog.DiscardHandler)))
	m := c.scrape()

	info := `regmirror_build_info{goversion="` + runtime.Version() + `",revision="` + buildRevision() + `",version="` + buildVersion() + `"}`
	if m[info] != 1 || sumFamily(m, "regmirror_build_info") != 1 {
		t.Errorf("no %s = 1 among %v", info, seriesOf(m, "regmirror_build_info"))
	}
	free, err := freeBytes(cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	size, err := diskSize(cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	// Other programs write to the disk meanwhile: compare orders, not bytes.
	if got := m["regmirror_disk_size_bytes"]; got != float64(size) {
		t.Errorf("regmirror_disk_size_bytes = %v, want %v", got, size)
	}
	if got := m["regmirror_disk_free_bytes"]; got <= 0 || got > float64(size) || math.Abs(got-float64(free)) > float64(size)/10 {
		t.Errorf("regmirror_disk_free_bytes = %v, want about %v of %v", got, free, size)
	}
}

// seriesOf lists the series of a family, for error messages.
func seriesOf(v metricValues, family string) []string {
	var keys []string
	for key := range v {
		if familyOf(key) == family {
			keys = append(keys, key)
		}
	}
	return keys
}

// sumFamily adds up every series of a family (histograms by their count).
func sumFamily(v metricValues, family string) float64 {
	var sum float64
	for key, value := range v {
		if familyOf(key) == family {
			sum += value
		}
	}
	return sum
}

func hasFamily(v metricValues, family string) bool {
	for key := range v {
		if familyOf(key) == family {
			return true
		}
	}
	return false
}

func familyOf(key string) string {
	name, _, _ := strings.Cut(key, "{")
	name, _, _ = strings.Cut(name, "#")
	return name
}
