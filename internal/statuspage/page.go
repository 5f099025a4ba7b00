package statuspage

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

	"github.com/regmirror/regmirror/internal/admin"
	"github.com/regmirror/regmirror/mirror"
	"github.com/regmirror/regmirror/upstream"
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

// Report is /status.json, everything the status page shows.
type Report struct {
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
	Cache       admin.StatsReport `json:"cache"`
	Upstreams   []UpstreamHealth  `json:"upstreams"`
	RecentPulls []RecentPull      `json:"recent_pulls,omitempty"`
	// Prefetch is the last or current prefetch run; its failures name
	// images, so they are shown only with Detail.
	Prefetch *PrefetchStatus `json:"prefetch,omitempty"`
}

// UpstreamHealth is one upstream registry as the daemon's counters see it.
type UpstreamHealth struct {
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

// RecentPull is a mirror.Pull for the page.
type RecentPull struct {
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

// breakerStates names the circuit breaker's states for the page.
var breakerStates = map[string]string{"closed": "up", "open": "down", "half-open": "probing"}

// Page serves the status page and its JSON. It is safe for
// concurrent use.
type Page struct {
	stats    func(context.Context) (admin.StatsReport, error)
	traffic  func() *admin.TrafficReport // what stats reads traffic with
	recent   func() []mirror.Pull
	health   func() []upstream.Health
	inFlight func() map[string]int64
	// upstreams are the configured hosts, listed even before any traffic.
	upstreams []string
	version   string
	started   time.Time
	now       func() time.Time
	log       *slog.Logger
	// users may see the detail (status.users); identify names the user a
	// request authenticates as (mirror.Mirror.User).
	users    []string
	identify func(*http.Request) (user string, ok bool)
	// prefetch reports the last prefetch run; nil before the daemon wires it.
	prefetch func() *PrefetchStatus

	// mu serialises rebuilding the cache report, which scans the index;
	// the fields below it are the last report and how long it took.
	mu       sync.Mutex
	cached   admin.StatsReport
	cachedAt time.Time
	took     time.Duration
}

// CacheStats builds the cache's report, as `regmirror cache stats` does
// (admin.Ops). Stats returns the store's errors.
type CacheStats interface {
	Stats(ctx context.Context) (admin.StatsReport, error)
}

// Mirror is what the page reads of the mirror (mirror.Mirror): what it
// served, its fetches in flight by upstream, its recent requests, and the
// user a request authenticates as.
type Mirror interface {
	Traffic() mirror.Traffic
	FetchesInFlight() map[string]int64
	RecentPulls() []mirror.Pull
	User(r *http.Request) (user string, ok bool)
}

// Upstreams reports the upstream clients' health (upstream.Monitor).
type Upstreams interface {
	Health() []upstream.Health
}

// What the daemon wires the page to.
var (
	_ CacheStats = (*admin.Ops)(nil)
	_ Mirror     = (*mirror.Mirror)(nil)
	_ Upstreams  = (*upstream.Monitor)(nil)
)

// Options are what New wires the page to.
type Options struct {
	Cache     CacheStats
	Mirror    Mirror
	Upstreams Upstreams
	// Configured are the mirrored registries' hosts, listed first and
	// even before any traffic; other hosts are shown only with detail.
	Configured []string
	// Users may see the detail (status.users).
	Users   []string
	Version string
	// Started is when the daemon started: traffic counts from then.
	Started time.Time
	Log     *slog.Logger
	// Prefetch reports the last or current prefetch run; nil when there is
	// none to report.
	Prefetch func() *PrefetchStatus
}

// New returns the status page of a running daemon.
func New(opts Options) *Page {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Page{
		stats:     opts.Cache.Stats,
		traffic:   admin.TrafficSince(opts.Mirror, opts.Started),
		recent:    opts.Mirror.RecentPulls,
		health:    opts.Upstreams.Health,
		inFlight:  opts.Mirror.FetchesInFlight,
		upstreams: opts.Configured,
		version:   opts.Version,
		started:   opts.Started,
		now:       time.Now,
		log:       log,
		users:     opts.Users,
		identify:  opts.Mirror.User,
		prefetch:  opts.Prefetch,
	}
}

// statsReuseFactor bounds how much of its time the daemon spends scanning
// the index for the page (see admin.ScanReuseFactor).
const statsReuseFactor = admin.ScanReuseFactor

// ServeHTML serves the page. With ?login, it first asks the browser for
// the credentials of a user of status.users (HTTP Basic), which the
// browser then sends with the page's polls of /status.json.
func (p *Page) ServeHTML(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Has("login") && !p.login(w, r) {
		return
	}
	writePage(w, statusPageHTML)
}

// writePage sends one of the pages with the headers both need.
func writePage(w http.ResponseWriter, html []byte) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	// The page runs its own inline script and talks to its own origin only.
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:")
	h.Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(html)
}

// statusRealm names the status page in its Basic challenge; the browser
// keeps the credentials for the whole origin, /status.json included.
const statusRealm = `Basic realm="regmirror status", charset="UTF-8"`

// login reports whether r comes from a user who may see the detail, and
// otherwise answers: a challenge, or why there is nothing to log in to.
func (p *Page) login(w http.ResponseWriter, r *http.Request) bool {
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
func (p *Page) mayDetail(r *http.Request) bool {
	user, ok := p.user(r)
	return ok && slices.Contains(p.users, user)
}

func (p *Page) user(r *http.Request) (string, bool) {
	if p.identify == nil {
		return "", false
	}
	return p.identify(r)
}

// ServeJSON serves /status.json: the report, with detail for the users
// of status.users.
func (p *Page) ServeJSON(w http.ResponseWriter, r *http.Request) {
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
func (p *Page) report(ctx context.Context, detail bool) (Report, error) {
	stats, err := p.cacheStats(ctx)
	if err != nil {
		return Report{}, err
	}
	if p.traffic != nil {
		stats.Traffic = p.traffic()
	}
	report := Report{
		Version:     p.version,
		StartedAt:   p.started,
		GeneratedAt: p.now(),
		Detail:      detail,
		Cache:       stats,
		Upstreams:   upstreamsHealth(p.health(), p.inFlight(), p.upstreams),
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
func withoutNames(r Report, configured int) Report {
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

func (p *Page) cacheStats(ctx context.Context) (admin.StatsReport, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	start := p.now()
	if !p.cachedAt.IsZero() && start.Sub(p.cachedAt) < statsReuseFactor*p.took {
		return p.cached, nil
	}
	r, err := p.stats(ctx)
	if err != nil {
		return admin.StatsReport{}, err
	}
	p.cached, p.cachedAt, p.took = r, start, p.now().Sub(start)
	return r, nil
}

// upstreamsHealth merges each upstream's breaker, request and error
// counts with its fetches in flight: the configured hosts first, in order,
// then any other host that has series (registries clients named, with
// allow_any_upstream), by name.
func upstreamsHealth(health []upstream.Health, inFlight map[string]int64, configured []string) []UpstreamHealth {
	byHost := map[string]*UpstreamHealth{}
	var hosts []string
	entry := func(host string) *UpstreamHealth {
		h, ok := byHost[host]
		if !ok {
			h = &UpstreamHealth{Host: host, State: "up"}
			byHost[host] = h
			hosts = append(hosts, host)
		}
		return h
	}
	for _, host := range configured {
		entry(host)
	}
	listed := len(hosts)
	for _, u := range health {
		h := entry(u.Host)
		if u.Breaker != "" {
			h.State = cmp.Or(breakerStates[u.Breaker], "unknown")
		}
		h.Requests += u.Requests
		h.FailedRequests += u.FailedRequests
		h.Errors += u.Errors
	}
	for host, n := range inFlight {
		entry(host).InFlight += n
	}
	slices.Sort(hosts[listed:])
	out := make([]UpstreamHealth, 0, len(hosts))
	for _, host := range hosts {
		out = append(out, *byHost[host])
	}
	return out
}

// recentPulls turns the mirror's recent requests into the page's rows.
func recentPulls(pulls []mirror.Pull) []RecentPull {
	out := make([]RecentPull, 0, len(pulls))
	for _, p := range pulls {
		repo := p.Repository
		if p.Upstream != "" {
			repo = p.Upstream + "/" + p.Repository
		}
		out = append(out, RecentPull{
			Time: p.Time, Method: p.Method, Kind: p.Kind, Repository: repo, Reference: p.Reference,
			Cache: p.Cache, Status: p.Status, Bytes: p.Bytes,
			DurationMS: float64(p.Duration.Microseconds()) / 1000,
		})
	}
	return out
}

// PrefetchStatus is the last or current prefetch run.
type PrefetchStatus struct {
	Running  bool      `json:"running"`
	Source   string    `json:"source,omitempty"` // "config" or "admin"
	Started  time.Time `json:"started,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
	Total    int       `json:"images"`
	Done     int       `json:"done"`
	Failed   int       `json:"failed"`
	// Failures name the images that failed and why; the page shows them
	// only to the users who see repository names.
	Failures []PrefetchResult `json:"failures,omitempty"`
}

// PrefetchResult is what became of one listed image.
type PrefetchResult struct {
	Image string `json:"image"`
	// Tags are the tags fetched: the image's own, or those its pattern
	// matched in the upstream's tag list.
	Tags      []string `json:"tags,omitempty"`
	Manifests int      `json:"manifests"`
	Blobs     int      `json:"blobs"`
	Bytes     int64    `json:"bytes"`
	Error     string   `json:"error,omitempty"`
}
