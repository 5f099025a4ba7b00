//go:build browser

package main

import (
	"context"
	"fmt"
	"html"
	"log/slog"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/internal/registrytest"
)

// The status page, rendered by a real headless Chromium after pulls from
// two upstreams, shows the numbers the daemon reports. With
// REGMIRROR_SCREENSHOT set, it also saves a screenshot there (make screenshot).
// Run with: make browser (installs chromium if missing).
func TestStatusPageInBrowser(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed: run scripts/install-chromium.sh (make browser does)")
	}
	hub, cfg := startHub(t)
	withUsers(t, &cfg, "alice")
	cfg.Status.Users = []string{"alice"} // who sees the repositories on the page
	ghcr := registrytest.New(t, registrytest.Options{})
	cfg.ListedUpstreamsOnly = true
	cfg.Upstreams = append(cfg.Upstreams, UpstreamConfig{Host: "ghcr.io", URL: ghcr.URL()})
	cfg.Cache.MaxSize = 4 << 20

	type pull struct {
		upstream *registrytest.Registry
		repo     string // as the client names it
		tag      string
		layers   int
		size     int64
		times    int
	}
	pulls := []pull{
		{hub, "library/node", "22", 3, 300 << 10, 2},
		{hub, "library/alpine", "3.20", 1, 120 << 10, 1},
		{ghcr, "ghcr.io/acme/api", "v1.4.2", 2, 200 << 10, 2},
		{hub, "library/python", "3.13", 2, 260 << 10, 1},
	}
	c := newUserClient(t, startDaemonLogging(t, cfg, slog.New(slog.DiscardHandler)), "alice")
	for i, p := range pulls {
		upstreamRepo := strings.TrimPrefix(p.repo, "ghcr.io/")
		img, err := p.upstream.PushImage(upstreamRepo, p.tag, registrytest.ImageOptions{Layers: p.layers, LayerSize: p.size, Seed: uint64(i + 10)})
		if err != nil {
			t.Fatal(err)
		}
		for range p.times {
			c.pullImage(p.repo, p.tag, img)
		}
	}
	// Read through the pulls' connection, so that every pull is counted.
	want := c.status()

	page := signedIn(t, c.base, "alice")
	dom := chromiumDOM(t, chromium, page+"/")
	if state := attr(t, dom, "body", "data-state"); state != "ready" {
		t.Fatalf("the page did not render its data: body data-state=%q", state)
	}
	checks := []struct {
		id        string
		wantValue string
		wantText  string
	}{
		{"used", fmt.Sprint(want.Cache.Bytes), ""},
		{"budget", fmt.Sprint(4 << 20), "4.0 MiB"},
		{"blobs", fmt.Sprint(want.Cache.Blobs), fmt.Sprint(want.Cache.Blobs)},
		{"manifests", "4", "4"},
		{"tags", "4", "4"},
		{"hits", fmt.Sprint(want.Cache.Traffic.Hits), fmt.Sprint(want.Cache.Traffic.Hits)},
		{"misses", fmt.Sprint(want.Cache.Traffic.Misses), fmt.Sprint(want.Cache.Traffic.Misses)},
		{"hit-ratio", "", fmt.Sprintf("%.1f%%", 100*want.Cache.Traffic.HitRatio)},
		{"saved", fmt.Sprint(want.Cache.Traffic.CacheBytes), ""},
		{"from-upstream", fmt.Sprint(want.Cache.Traffic.UpstreamBytes), ""},
		{"usage-pct", "", fmt.Sprintf("%.1f%% of budget", 100*float64(want.Cache.Bytes)/float64(4<<20))},
	}
	for _, ck := range checks {
		value, text := byID(t, dom, ck.id)
		if ck.wantValue != "" && value != ck.wantValue {
			t.Errorf("#%s data-value = %q, want %q", ck.id, value, ck.wantValue)
		}
		if ck.wantText != "" && text != ck.wantText {
			t.Errorf("#%s shows %q, want %q", ck.id, text, ck.wantText)
		}
	}

	top := tableRows(t, dom, "top-repos")
	if len(top) != len(want.Cache.TopRepos) || len(top) != len(pulls) {
		t.Fatalf("top repositories shows %d rows, want %d: %v", len(top), len(pulls), top)
	}
	for i, r := range want.Cache.TopRepos {
		if top[i][0] != r.Repo || top[i][1] != strconv.Itoa(r.Blobs) {
			t.Errorf("top repositories row %d = %v, want %s with %d blobs", i, top[i], r.Repo, r.Blobs)
		}
	}

	recent := tableRows(t, dom, "recent")
	if len(recent) != min(len(want.RecentPulls), recentPullsShown) {
		t.Fatalf("recent pulls shows %d rows, want %d", len(recent), min(len(want.RecentPulls), recentPullsShown))
	}
	newest := recent[0] // time, request, repository, reference, cache, status, bytes, duration
	if newest[1] != "GET blob" || newest[2] != "docker.io/library/python" || newest[4] != "miss" || newest[5] != "200" {
		t.Errorf("newest recent pull = %v, want a GET of a docker.io/library/python blob, a miss", newest)
	}
	hits := 0
	for _, row := range recent {
		if row[4] == "hit" {
			hits++
		}
	}
	if hits == 0 {
		t.Errorf("no hit among the recent pulls shown: %v", recent)
	}

	upstreams := tableRows(t, dom, "upstreams")
	if len(upstreams) != 2 || upstreams[0][0] != "docker.io" || upstreams[1][0] != "ghcr.io" ||
		upstreams[0][1] != "up" || upstreams[1][1] != "up" {
		t.Errorf("upstreams shows %v, want docker.io and ghcr.io, both up", upstreams)
	}
	if upstreams[0][2] != fmt.Sprint(want.Upstreams[0].Requests) {
		t.Errorf("docker.io requests shown %s, want %d", upstreams[0][2], want.Upstreams[0].Requests)
	}

	if path := os.Getenv("REGMIRROR_SCREENSHOT"); path != "" {
		chromiumScreenshot(t, chromium, page+"/", path)
		t.Logf("screenshot saved to %s", path)
	}
}

// signedIn is a proxy to the daemon at base that sends user's credentials
// with every request, as a browser does once the user signed in at /?login.
func signedIn(t *testing.T, base, user string) string {
	t.Helper()
	target, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(target)
		r.Out.Header.Set("Authorization", basicAuth(user))
	}})
	t.Cleanup(proxy.Close)
	return proxy.URL
}

// recentPullsShown is how many recent pulls the page lists (status.html).
const recentPullsShown = 20

// chromiumFlags run Chromium headless as root, with nothing phoning home,
// in a fresh profile.
func chromiumFlags(t *testing.T) []string {
	return []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir(),
		// Virtual time runs the page's script, including its first
		// fetch of /status.json, before the DOM is dumped.
		"--virtual-time-budget=4000",
	}
}

func runChromium(t *testing.T, chromium string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, append(chromiumFlags(t), args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

func chromiumDOM(t *testing.T, chromium, url string) string {
	t.Helper()
	return string(runChromium(t, chromium, "--dump-dom", url))
}

func chromiumScreenshot(t *testing.T, chromium, url, path string) {
	t.Helper()
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	runChromium(t, chromium, "--hide-scrollbars", "--window-size=1200,900", "--screenshot="+abs, url)
	if info, err := os.Stat(abs); err != nil || info.Size() == 0 {
		t.Fatalf("no screenshot at %s: %v", abs, err)
	}
}

// attr returns an attribute of the first element with tag.
func attr(t *testing.T, dom, tag, name string) string {
	t.Helper()
	m := regexp.MustCompile(`<` + tag + `\b[^>]*\b` + name + `="([^"]*)"`).FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("no <%s %s=...> in the page", tag, name)
	}
	return html.UnescapeString(m[1])
}

// byID returns the data-value attribute and the shown text of the element
// with id.
func byID(t *testing.T, dom, id string) (value, text string) {
	t.Helper()
	m := regexp.MustCompile(`<(\w+) ([^>]*\bid="` + regexp.QuoteMeta(id) + `"[^>]*)>(.*?)</(\w+)>`).FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("no element #%s in the page", id)
	}
	if v := regexp.MustCompile(`\bdata-value="([^"]*)"`).FindStringSubmatch(m[2]); v != nil {
		value = html.UnescapeString(v[1])
	}
	return value, textOf(m[3])
}

// tableRows returns the text of every cell of the body rows of a table.
func tableRows(t *testing.T, dom, id string) [][]string {
	t.Helper()
	m := regexp.MustCompile(`(?s)<table id="` + regexp.QuoteMeta(id) + `">.*?<tbody>(.*?)</tbody>`).FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("no table #%s in the page", id)
	}
	var rows [][]string
	for _, row := range regexp.MustCompile(`(?s)<tr>(.*?)</tr>`).FindAllStringSubmatch(m[1], -1) {
		var cells []string
		for _, cell := range regexp.MustCompile(`(?s)<td[^>]*>(.*?)</td>`).FindAllStringSubmatch(row[1], -1) {
			cells = append(cells, textOf(cell[1]))
		}
		if len(cells) == 1 && strings.Contains(row[1], `class="empty"`) {
			continue // the "nothing yet" placeholder row
		}
		rows = append(rows, cells)
	}
	return rows
}

var tags = regexp.MustCompile(`<[^>]*>`)

func textOf(fragment string) string {
	return strings.TrimSpace(html.UnescapeString(tags.ReplaceAllString(fragment, "")))
}
