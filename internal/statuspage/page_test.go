package statuspage

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"time"

	"github.com/regmirror/regmirror/internal/admin"
	"github.com/regmirror/regmirror/mirror"
	"github.com/regmirror/regmirror/upstream"
)

// The cache report, which scans the index, is reused for statsReuseFactor
// times as long as it took to build, and rebuilt after.
func TestStatusPageRationsIndexScans(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	scans := 0
	p := &Page{
		now: func() time.Time { return now },
		stats: func(context.Context) (admin.StatsReport, error) {
			scans++
			now = now.Add(time.Second) // each scan takes a second
			return admin.StatsReport{Blobs: scans}, nil
		},
	}
	steps := []struct {
		advance   time.Duration
		wantScans int
	}{
		{0, 1},                 // first report: scanned
		{5 * time.Second, 1},   // fresh: reused
		{13 * time.Second, 1},  // 19 s after the scan began: still reused
		{1 * time.Second, 2},   // 20 s: rebuilt
		{18 * time.Second, 2},  // 19 s after the second scan began: reused
		{100 * time.Second, 3}, // long stale: rebuilt
	}
	for i, s := range steps {
		now = now.Add(s.advance)
		r, err := p.cacheStats(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if scans != s.wantScans || r.Blobs != scans {
			t.Fatalf("step %d: %d scans (report from scan %d), want %d", i, scans, r.Blobs, s.wantScans)
		}
	}
}

func TestUpstreamsHealth(t *testing.T) {
	t.Parallel()
	health := []upstream.Health{
		{Host: "aa.example", Breaker: "closed"},
		{Host: "docker.io", Breaker: "closed", Requests: 14},
		{Host: "ghcr.io", Breaker: "open", Requests: 6, FailedRequests: 5, Errors: 2},
		{Host: "zz.example", Breaker: "half-open"},
	}
	inFlight := map[string]int64{"docker.io": 3}
	got := upstreamsHealth(health, inFlight, []string{"ghcr.io", "docker.io", "quay.io"})
	want := []UpstreamHealth{
		{Host: "ghcr.io", State: "down", Requests: 6, FailedRequests: 5, Errors: 2},
		{Host: "docker.io", State: "up", Requests: 14, InFlight: 3},
		{Host: "quay.io", State: "up"},
		{Host: "aa.example", State: "up"},
		{Host: "zz.example", State: "probing"},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("upstreamsHealth =\n%+v\nwant\n%+v", got, want)
	}
}

// While the index part of the report is reused, its traffic is read anew.
func TestStatusReportTrafficIsLive(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	scans, hits := 0, int64(0)
	p := &Page{
		now: func() time.Time { return now },
		stats: func(context.Context) (admin.StatsReport, error) {
			scans++
			now = now.Add(time.Second)
			return admin.StatsReport{Traffic: &admin.TrafficReport{Hits: -1}}, nil
		},
		traffic: func() *admin.TrafficReport {
			hits++
			return &admin.TrafficReport{Hits: hits}
		},
		health:   func() []upstream.Health { return nil },
		inFlight: func() map[string]int64 { return nil },
		recent:   func() []mirror.Pull { return nil },
	}
	for want := int64(1); want <= 3; want++ {
		r, err := p.report(context.Background(), true)
		if err != nil {
			t.Fatal(err)
		}
		if r.Cache.Traffic.Hits != want || scans != 1 {
			t.Fatalf("report %d: %d hits after %d scans, want %d hits after 1 scan", want, r.Cache.Traffic.Hits, scans, want)
		}
	}
}

// Both pages carry the shared style inline: nothing is left of its
// placeholder, and its variables are there for the pages' own rules.
func TestPagesCarryTheSharedStyle(t *testing.T) {
	t.Parallel()
	for name, page := range map[string][]byte{"status": statusPageHTML, "browse": browsePageHTML} {
		if bytes.Contains(page, []byte("/* pages.css */")) || !bytes.Contains(page, []byte("--accent: #2f6fde")) {
			t.Errorf("the %s page lacks the shared style", name)
		}
	}
}
