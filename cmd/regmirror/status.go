package main

import (
	"bytes"
	"cmp"
	"context"
	_ "embed"
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/regmirror/regmirror/mirror"
)

// statusPageHTML is the status page: static HTML whose inline script polls
// /status.json and renders it. No build step, nothing fetched from elsewhere.
var statusPageHTML = withPageStyle(statusHTML)

//go:embed status.html
var statusHTML []byte

// pagesCSS is the style the status and browse pages share; each page
// carries it inline, so that it fetches nothing (see their CSP).
//
//go:embed pages.css
var pagesCSS []byte

// withPageStyle puts pagesCSS where page's style says /* pages.css */.
func withPageStyle(page []byte) []byte {
	return bytes.Replace(page, []byte("  /* pages.css */"), bytes.TrimRight(pagesCSS, "\n"), 1)
}

// statusReport is /status.json, everything the status page shows.
type statusReport struct {
	Version     string    `json:"version"`
	StartedAt   time.Time `json:"started_at"`
	GeneratedAt time.Time `json:"generated_at"`
	// Detail says whether the report names repositories, tags and
	// digests, which only the users of status.users see. Without it, the
	// cache's top repositories and the recent pulls are left out and the
	// upstreams are the configured ones only: aggregate numbers, nothing
	// that tells which private content exists.
	Detail bool `json:"detail"`
	// Cache is exactly what `regmirror cache stats` reports (with Detail).
	Cache       statsReport      `json:"cache"`
	Upstreams   []upstreamHealth `json:"upstreams"`
	RecentPulls []recentPull     `json:"recent_pulls,omitempty"`
	// Prefetch is the last or current prefetch run; its failures name
	// images, so they are shown only with Detail.
	Prefetch *prefetchStatus `json:"prefetch,omitempty"`
}

// upstreamHealth is one upstream registry as the daemon's counters see it.
type upstreamHealth struct {
	Host string `json:"host"`
	// State is the circuit breaker's: "up" (closed), "down" (open: requests
	// are not sent after repeated failures) or "probing" (half-open).
	State string `json:"state"`
	// Requests counts HTTP requests sent (tokens and redirects included);
	// FailedRequests those answered 5xx or not at all.
	Requests       int64 `json:"requests"`
	FailedRequests int64 `json:"failed_requests"`
	// Errors counts operations that failed after retries.
	Errors   int64 `json:"errors"`
	InFlight int64 `json:"in_flight"`
}

// recentPull is a mirror.Pull for the page.
type recentPull struct {
	Time       time.Time `json:"time"`
	Method     string    `json:"method"`
	Kind       string    `json:"kind"`
	Repository string    `json:"repository"` // with its registry, e.g. "docker.io/library/node"
	Reference  string    `json:"reference"`
	Cache      string    `json:"cache"`
	Status     int       `json:"status"`
	Bytes      int64     `json:"bytes"`
	DurationMS float64   `json:"duration_ms"`
}

// breakerStates names the values of regmirror_upstream_breaker_state.
var breakerStates = map[float64]string{0: "up", 1: "down", 2: "probing"}

// statusPage serves the status page and its JSON. It is safe for
// concurrent use.
type statusPage struct {
	stats     func(context.Context) (statsReport, error)
	traffic   func() (*trafficReport, error) // what stats reads traffic with
	recent    func() []mirror.Pull
	metrics   prometheus.Gatherer
	upstreams []string // the configured hosts, listed even before any traffic
	version   string
	started   time.Time
	now       func() time.Time
	log       *slog.Logger
	// users may see the detail (status.users); identify names the user a
	// request authenticates as (mirror.Mirror.User).
	users    []string
	identify func(*http.Request) (user string, ok bool)
	// prefetch reports the last prefetch run; nil before the daemon wires it.
	prefetch func() *prefetchStatus

	// mu serialises rebuilding the cache report, which scans the index;
	// the fields below it are the last report and how long it took.
	mu       sync.Mutex
	cached   statsReport
	cachedAt time.Time
	took     time.Duration
}

// statsReuseFactor bounds how much of its time the daemon spends scanning
// the index for the page: a report that took d to build is reused for
// statsReuseFactor×d, so a small cache is always fresh and a huge one is
// scanned at most a few percent of the time, however many pages poll.
const statsReuseFactor = 20

// serveHTML serves the page. With ?login, it first asks the browser for
// the credentials of a user of status.users (HTTP Basic), which the
// browser then sends with the page's polls of /status.json.
func (p *statusPage) serveHTML(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Has("login") && !p.login(w, r) {
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	// The page runs its own inline script and talks to its own origin only.
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:")
	h.Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(statusPageHTML)
}

// statusRealm names the status page in its Basic challenge; the browser
// keeps the credentials for the whole origin, /status.json included.
const statusRealm = `Basic realm="regmirror status", charset="UTF-8"`

// login reports whether r comes from a user who may see the detail, and
// otherwise answers: a challenge, or why there is nothing to log in to.
func (p *statusPage) login(w http.ResponseWriter, r *http.Request) bool {
	if len(p.users) == 0 {
		http.Error(w, "no user may see the status detail over HTTP (status.users is empty): run `regmirror cache stats` on the host", http.StatusNotFound)
		return false
	}
	user, ok := p.user(r)
	switch {
	case !ok:
		w.Header().Set("WWW-Authenticate", statusRealm)
		http.Error(w, "log in as a user of status.users", http.StatusUnauthorized)
		return false
	case !slices.Contains(p.users, user):
		http.Error(w, "this user may not see the status detail: it is not in status.users", http.StatusForbidden)
		return false
	}
	return true
}

// mayDetail reports whether r authenticates a user of status.users.
func (p *statusPage) mayDetail(r *http.Request) bool {
	user, ok := p.user(r)
	return ok && slices.Contains(p.users, user)
}

func (p *statusPage) user(r *http.Request) (string, bool) {
	if p.identify == nil {
		return "", false
	}
	return p.identify(r)
}

func (p *statusPage) serveJSON(w http.ResponseWriter, r *http.Request) {
	report, err := p.report(r.Context(), p.mayDetail(r))
	if err != nil {
		p.log.Warn("status report failed", "err", err)
		http.Error(w, "status unavailable: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	// The answer depends on who asks.
	w.Header().Set("Vary", "Authorization")
	_ = json.NewEncoder(w).Encode(report)
}

// report assembles the page's numbers: the cache report (its index part
// reused while fresh, its traffic always read anew), the upstreams and,
// with detail, the recent pulls.
func (p *statusPage) report(ctx context.Context, detail bool) (statusReport, error) {
	stats, err := p.cacheStats(ctx)
	if err != nil {
		return statusReport{}, err
	}
	if p.traffic != nil {
		if stats.Traffic, err = p.traffic(); err != nil {
			return statusReport{}, err
		}
	}
	snap, err := gatherMetrics(p.metrics)
	if err != nil {
		return statusReport{}, err
	}
	report := statusReport{
		Version:     p.version,
		StartedAt:   p.started,
		GeneratedAt: p.now(),
		Detail:      detail,
		Cache:       stats,
		Upstreams:   upstreamsHealth(snap, p.upstreams),
	}
	if p.prefetch != nil {
		report.Prefetch = p.prefetch()
	}
	if !detail {
		return withoutNames(report, len(p.upstreams)), nil
	}
	report.RecentPulls = recentPulls(p.recent())
	return report, nil
}

// withoutNames leaves out of a report every repository, tag and digest,
// and the registries that clients named rather than the operator
// (allow_any_upstream): those come after the configured ones.
func withoutNames(r statusReport, configured int) statusReport {
	r.Cache.TopRepos = nil
	r.RecentPulls = nil
	if r.Prefetch != nil {
		pf := *r.Prefetch
		pf.Failures = nil
		r.Prefetch = &pf
	}
	r.Upstreams = r.Upstreams[:min(configured, len(r.Upstreams))]
	return r
}

func (p *statusPage) cacheStats(ctx context.Context) (statsReport, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	start := p.now()
	if !p.cachedAt.IsZero() && start.Sub(p.cachedAt) < statsReuseFactor*p.took {
		return p.cached, nil
	}
	r, err := p.stats(ctx)
	if err != nil {
		return statsReport{}, err
	}
	p.cached, p.cachedAt, p.took = r, start, p.now().Sub(start)
	return r, nil
}

// upstreamsHealth reads each upstream's breaker, request and error counters:
// the configured hosts first, in order, then any other host that has series
// (registries clients named, with allow_any_upstream), by name.
func upstreamsHealth(snap metricsSnapshot, configured []string) []upstreamHealth {
	byHost := map[string]*upstreamHealth{}
	var hosts []string
	health := func(host string) *upstreamHealth {
		h, ok := byHost[host]
		if !ok {
			h = &upstreamHealth{Host: host, State: "up"}
			byHost[host] = h
			hosts = append(hosts, host)
		}
		return h
	}
	for _, host := range configured {
		health(host)
	}
	listed := len(hosts)
	for _, s := range snap["regmirror_upstream_breaker_state"] {
		health(s.labels["upstream"]).State = cmp.Or(breakerStates[s.value], "unknown")
	}
	for _, s := range snap["regmirror_upstream_requests_total"] {
		h := health(s.labels["upstream"])
		h.Requests += int64(s.value)
		if code := s.labels["code"]; code == "5xx" || code == "error" {
			h.FailedRequests += int64(s.value)
		}
	}
	for _, s := range snap["regmirror_upstream_errors_total"] {
		health(s.labels["upstream"]).Errors += int64(s.value)
	}
	for _, s := range snap["regmirror_upstream_fetches_in_flight"] {
		health(s.labels["upstream"]).InFlight += int64(s.value)
	}
	slices.Sort(hosts[listed:])
	out := make([]upstreamHealth, 0, len(hosts))
	for _, host := range hosts {
		out = append(out, *byHost[host])
	}
	return out
}

func recentPulls(pulls []mirror.Pull) []recentPull {
	out := make([]recentPull, 0, len(pulls))
	for _, p := range pulls {
		repo := p.Repository
		if p.Upstream != "" {
			repo = p.Upstream + "/" + p.Repository
		}
		out = append(out, recentPull{
			Time: p.Time, Method: p.Method, Kind: p.Kind, Repository: repo, Reference: p.Reference,
			Cache: p.Cache, Status: p.Status, Bytes: p.Bytes,
			DurationMS: float64(p.Duration.Microseconds()) / 1000,
		})
	}
	return out
}
