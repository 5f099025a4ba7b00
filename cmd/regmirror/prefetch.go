package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/regmirror/regmirror/internal/admin"
	"github.com/regmirror/regmirror/internal/repoglob"
	"github.com/regmirror/regmirror/internal/statuspage"
	"github.com/regmirror/regmirror/mirror"
)

// prefetchClient is the client address the mirror's access log and
// limits see for prefetch requests; no network address looks like it.
const prefetchClient = "prefetch"

// Limits of a prefetch run.
const (
	// prefetchBlobsAtOnce bounds one image's blob downloads in flight; the
	// upstream's fetch cap bounds them again across all clients.
	prefetchBlobsAtOnce = 3
	// prefetchAttempts is how often a request the mirror answers with 503
	// or 429 (a rate-limit pause, the miss limit, the fetch cap) is tried,
	// after waiting what Retry-After says, at most prefetchMaxWait.
	prefetchAttempts = 6
	prefetchMaxWait  = 2 * time.Minute
	// maxPrefetchManifest caps a manifest or tag list read into memory.
	maxPrefetchManifest = 8 << 20
)

// manifestAccept is what a pull accepts: an index or a single manifest.
var manifestAccept = strings.Join([]string{
	ocispec.MediaTypeImageIndex, "application/vnd.docker.distribution.manifest.list.v2+json",
	ocispec.MediaTypeImageManifest, "application/vnd.docker.distribution.manifest.v2+json",
}, ", ")

// prefetcher fetches image lists through the mirror's own handler, as an
// internal client: every download takes the path a pull takes (coalescing,
// verification, the upstream's fetch cap and rate-limit pauses). Safe for
// concurrent use; runs do not overlap.
type prefetcher struct {
	mirror  http.Handler
	log     *slog.Logger
	metrics *prefetchMetrics
	now     func() time.Time
	// failures hears of every image a run could not fetch (the webhooks);
	// nil: nobody.
	failures prefetchFailures

	run chan struct{} // a one-slot semaphore: one run at a time

	mu     sync.Mutex
	status prefetchStatus
}

// prefetchStatus and prefetchResult are the status page's: it shows the
// last or current run.
type (
	prefetchStatus = statuspage.PrefetchStatus
	prefetchResult = statuspage.PrefetchResult
)

// prefetchReport is a whole run, `regmirror prefetch --json`.
type prefetchReport struct {
	Images []prefetchResult `json:"images"`
	OK     int              `json:"ok"`
	Failed int              `json:"failed"`
	Blobs  int              `json:"blobs"`
	Bytes  int64            `json:"bytes"`
}

func newPrefetcher(m http.Handler, reg prometheus.Registerer, log *slog.Logger) (*prefetcher, error) {
	metrics, err := newPrefetchMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &prefetcher{mirror: m, log: log, metrics: metrics, now: time.Now, run: make(chan struct{}, 1)}, nil
}

// runClaim is the run slot taken ahead of a run; nil when none was.
type runClaim struct{ p *prefetcher }

// claim takes the run slot now, when want, for a run that starts later:
// runs asked for meanwhile wait for it.
func (p *prefetcher) claim(want bool) *runClaim {
	if !want {
		return nil
	}
	p.run <- struct{}{}
	return &runClaim{p: p}
}

// runSchedule fetches refs now, in the run of first, and then every
// interval until ctx ends.
func (p *prefetcher) runSchedule(ctx context.Context, first *runClaim, refs []imageRef, interval time.Duration) error {
	if first == nil {
		return nil
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		r, err := p.fetchClaimed(ctx, first, "config", refs, nil)
		first = nil
		if err != nil && ctx.Err() == nil {
			p.log.Warn("prefetch", "err", err)
		} else if err == nil {
			p.log.Info("prefetched the listed images", "ok", r.OK, "failed", r.Failed, "blobs", r.Blobs, "bytes", r.Bytes)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// fetch fetches every image of refs, one after the other, and reports on
// each. A blob is asked for once per run, however many images share it. It
// fails only when ctx ends; a failed image is reported and the run goes on.
func (p *prefetcher) fetch(ctx context.Context, source string, refs []imageRef, progress func(admin.Progress)) (prefetchReport, error) {
	return p.fetchClaimed(ctx, nil, source, refs, progress)
}

// fetchClaimed is fetch in the run slot of claim, or, when claim is nil,
// in the slot it waits for.
func (p *prefetcher) fetchClaimed(ctx context.Context, claim *runClaim, source string, refs []imageRef, progress func(admin.Progress)) (prefetchReport, error) {
	if claim == nil {
		select {
		case p.run <- struct{}{}:
		case <-ctx.Done():
			return prefetchReport{}, ctx.Err()
		}
	}
	defer func() { <-p.run }()
	p.begin(source, len(refs))
	ctx = mirror.AsInternalClient(ctx)
	report := prefetchReport{Images: []prefetchResult{}}
	seen := &seenBlobs{seen: map[digest.Digest]bool{}}
	for i, ref := range refs {
		res := p.fetchImage(ctx, ref, seen)
		if ctx.Err() != nil {
			p.end()
			return report, ctx.Err()
		}
		report.add(res)
		p.record(res)
		if progress != nil {
			progress(admin.Progress{Phase: "prefetch", Done: i + 1, Total: len(refs)})
		}
	}
	p.end()
	return report, nil
}

func (r *prefetchReport) add(res prefetchResult) {
	r.Images = append(r.Images, res)
	r.Blobs += res.Blobs
	r.Bytes += res.Bytes
	if res.Error != "" {
		r.Failed++
	} else {
		r.OK++
	}
}

// seenBlobs are the blobs a run has asked for.
type seenBlobs struct {
	mu   sync.Mutex
	seen map[digest.Digest]bool
}

// first reports whether d is new to the run, and marks it seen.
func (s *seenBlobs) first(d digest.Digest) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen[d] {
		return false
	}
	s.seen[d] = true
	return true
}

// fetchImage fetches one listed image: its tags, their manifests (an
// index's children of the wanted platforms) and every blob they name.
func (p *prefetcher) fetchImage(ctx context.Context, ref imageRef, seen *seenBlobs) prefetchResult {
	res := prefetchResult{Image: ref.String()}
	references, err := p.references(ctx, ref)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	var blobs []ocispec.Descriptor
	for _, reference := range references {
		found, manifests, err := p.manifestBlobs(ctx, ref, reference)
		res.Manifests += manifests
		if err != nil {
			res.Error = fmt.Sprintf("%s:%s: %v", ref.name(), reference, err)
			return res
		}
		blobs = append(blobs, found...)
		if !strings.HasPrefix(reference, "sha256:") {
			res.Tags = append(res.Tags, reference)
		}
	}
	blobs = slices.DeleteFunc(blobs, func(b ocispec.Descriptor) bool { return len(b.URLs) > 0 || !seen.first(b.Digest) })
	res.Blobs, res.Bytes, err = p.fetchBlobs(ctx, ref, blobs)
	if err != nil {
		res.Error = err.Error()
	}
	return res
}

// references are the tags (or the digest) to fetch for ref: a pattern is
// matched against the upstream's tag list, through the mirror.
func (p *prefetcher) references(ctx context.Context, ref imageRef) ([]string, error) {
	switch {
	case ref.Digest != "":
		return []string{ref.Digest.String()}, nil
	case !ref.isPattern():
		return []string{ref.Tag}, nil
	}
	tags, err := p.tags(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("%s: listing tags: %w", ref.name(), err)
	}
	matched := slices.DeleteFunc(tags, func(t string) bool {
		return !repoglob.MatchTag(ref.Tag, t)
	})
	if len(matched) == 0 {
		return nil, fmt.Errorf("%s: no tag matches %q among the upstream's %d tags", ref.name(), ref.Tag, len(tags))
	}
	return matched, nil
}

// tags reads the whole tag list, page by page.
func (p *prefetcher) tags(ctx context.Context, ref imageRef) ([]string, error) {
	var all []string
	next := "/v2/" + ref.name() + "/tags/list?n=1000"
	for page := 0; next != "" && page < 1000; page++ {
		var body bytes.Buffer
		resp, err := p.get(ctx, next, "application/json", &limitedBuffer{buf: &body, max: maxPrefetchManifest})
		if err != nil {
			return nil, err
		}
		var list struct {
			Tags []string `json:"tags"`
		}
		if err := json.Unmarshal(body.Bytes(), &list); err != nil {
			return nil, fmt.Errorf("tag list: %w", err)
		}
		all = append(all, list.Tags...)
		next = nextLink(resp.header.Get("Link"))
	}
	return all, nil
}

var linkNext = regexp.MustCompile(`<([^>]+)>\s*;\s*rel="?next"?`)

// nextLink is the path of a Link header's next page; "" when none.
func nextLink(header string) string {
	m := linkNext.FindStringSubmatch(header)
	if m == nil {
		return ""
	}
	u, err := url.Parse(m[1])
	if err != nil || !strings.HasPrefix(u.Path, "/v2/") {
		return ""
	}
	return u.RequestURI()
}

// manifestBlobs fetches a manifest and, for an index, its children of the
// wanted platforms, and returns the blobs they name and how many manifests
// it fetched.
func (p *prefetcher) manifestBlobs(ctx context.Context, ref imageRef, reference string) ([]ocispec.Descriptor, int, error) {
	m, err := p.manifest(ctx, ref, reference)
	if err != nil {
		return nil, 0, err
	}
	if len(m.Manifests) == 0 {
		return append([]ocispec.Descriptor{m.Config}, m.Layers...), 1, nil
	}
	count := 1
	var blobs []ocispec.Descriptor
	for _, child := range m.Manifests {
		if len(ref.Platforms) > 0 && !slices.Contains(ref.Platforms, admin.PlatformString(child.Platform)) {
			continue
		}
		c, err := p.manifest(ctx, ref, child.Digest.String())
		if err != nil {
			return nil, count, fmt.Errorf("platform %s: %w", admin.PlatformString(child.Platform), err)
		}
		count++
		if c.Config.Digest != "" {
			blobs = append(blobs, c.Config)
		}
		blobs = append(blobs, c.Layers...)
	}
	return blobs, count, nil
}

// anyManifest is the fields of an image manifest and of an index.
type anyManifest struct {
	Config    ocispec.Descriptor   `json:"config"`
	Layers    []ocispec.Descriptor `json:"layers"`
	Manifests []ocispec.Descriptor `json:"manifests"`
}

func (p *prefetcher) manifest(ctx context.Context, ref imageRef, reference string) (anyManifest, error) {
	var body bytes.Buffer
	if _, err := p.get(ctx, "/v2/"+ref.name()+"/manifests/"+reference, manifestAccept,
		&limitedBuffer{buf: &body, max: maxPrefetchManifest}); err != nil {
		return anyManifest{}, err
	}
	var m anyManifest
	if err := json.Unmarshal(body.Bytes(), &m); err != nil {
		return anyManifest{}, fmt.Errorf("manifest %s: %w", reference, err)
	}
	return m, nil
}

// fetchBlobs downloads blobs into the cache, a few at a time, and checks
// that each arrived whole.
func (p *prefetcher) fetchBlobs(ctx context.Context, ref imageRef, blobs []ocispec.Descriptor) (int, int64, error) {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(prefetchBlobsAtOnce)
	var mu sync.Mutex
	var count int
	var bytes int64
	for _, b := range blobs {
		g.Go(func() error {
			counter := &countingWriter{}
			if _, err := p.get(gctx, "/v2/"+ref.name()+"/blobs/"+b.Digest.String(), "", counter); err != nil {
				return fmt.Errorf("%s: blob %s: %w", ref.name(), b.Digest, err)
			}
			if counter.n != b.Size {
				return fmt.Errorf("%s: blob %s: %d bytes arrived, want %d", ref.name(), b.Digest, counter.n, b.Size)
			}
			mu.Lock()
			defer mu.Unlock()
			count++
			bytes += b.Size
			p.metrics.blobs.Inc()
			p.metrics.bytes.Add(float64(b.Size))
			return nil
		})
	}
	err := g.Wait()
	return count, bytes, err
}

// internalResponse is what the mirror answered.
type internalResponse struct {
	status int
	header http.Header
}

// get asks the mirror for target and writes a 200 answer's body to body,
// retrying after the Retry-After of a 503 or 429.
func (p *prefetcher) get(ctx context.Context, target, accept string, body io.Writer) (internalResponse, error) {
	for attempt := 1; ; attempt++ {
		w := &internalWriter{header: http.Header{}, body: body}
		if err := p.serve(ctx, w, target, accept); err != nil {
			return internalResponse{}, err
		}
		resp := internalResponse{status: w.statusCode(), header: w.header}
		if resp.status == http.StatusOK {
			return resp, nil
		}
		wait, again := retryAfter(w)
		if !again || attempt == prefetchAttempts {
			return resp, w.failure()
		}
		p.log.Debug("prefetch waits before asking again", "path", target, "status", resp.status, "wait", wait)
		if err := sleepCtx(ctx, wait); err != nil {
			return resp, err
		}
	}
}

// serve runs one request through the mirror. A handler that gives up on a
// response it started (an upstream cut off mid-blob) panics with
// http.ErrAbortHandler, as net/http expects; that is a failed download.
func (p *prefetcher) serve(ctx context.Context, w *internalWriter, target, accept string) (err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://regmirror"+target, nil)
	if err != nil {
		return err
	}
	req.RemoteAddr = prefetchClient
	req.RequestURI = target
	req.Header.Set("User-Agent", "regmirror-prefetch")
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	defer func() {
		if r := recover(); r != nil {
			if r != http.ErrAbortHandler {
				panic(r)
			}
			err = errors.New("the download was cut off")
		}
	}()
	p.mirror.ServeHTTP(w, req)
	return nil
}

// retryAfter says whether a refusal is worth waiting out, and how long.
func retryAfter(w *internalWriter) (time.Duration, bool) {
	switch w.statusCode() {
	case http.StatusServiceUnavailable, http.StatusTooManyRequests:
	default:
		return 0, false
	}
	seconds, err := strconv.Atoi(w.header.Get("Retry-After"))
	if err != nil || seconds < 1 {
		seconds = 1
	}
	return min(time.Duration(seconds)*time.Second, prefetchMaxWait), true
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// internalWriter takes the mirror's answer to an internal request: the
// body of a 200 goes to body, that of an error is kept for its message.
type internalWriter struct {
	header http.Header
	status int
	body   io.Writer
	errBuf bytes.Buffer
}

func (w *internalWriter) Header() http.Header { return w.header }

func (w *internalWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
}

func (w *internalWriter) Write(data []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	if w.status != http.StatusOK {
		if w.errBuf.Len() < 64<<10 {
			w.errBuf.Write(data)
		}
		return len(data), nil
	}
	return w.body.Write(data)
}

func (w *internalWriter) statusCode() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// failure turns an error answer into an error that says what the upstream
// said: "not found upstream (MANIFEST_UNKNOWN: ...)".
func (w *internalWriter) failure() error {
	var body struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	detail := strings.TrimSpace(w.errBuf.String())
	if json.Unmarshal(w.errBuf.Bytes(), &body) == nil && len(body.Errors) > 0 {
		detail = body.Errors[0].Code + ": " + body.Errors[0].Message
	}
	what := http.StatusText(w.statusCode())
	if w.statusCode() == http.StatusNotFound {
		what = "not found upstream"
	}
	if detail == "" {
		return fmt.Errorf("%s (%d)", what, w.statusCode())
	}
	return fmt.Errorf("%s (%d %s)", what, w.statusCode(), detail)
}

// countingWriter counts and drops a blob's bytes: the mirror has verified
// and stored them.
type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

// limitedBuffer refuses to grow past max.
type limitedBuffer struct {
	buf *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if l.buf.Len()+len(p) > l.max {
		return 0, fmt.Errorf("answer larger than %d bytes", l.max)
	}
	return l.buf.Write(p)
}

// begin, record and end keep the status and the metrics of a run.
func (p *prefetcher) begin(source string, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status = prefetchStatus{Running: true, Source: source, Started: p.now(), Total: total}
	p.metrics.pending.Set(float64(total))
}

func (p *prefetcher) record(res prefetchResult) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status.Done++
	p.metrics.pending.Set(float64(p.status.Total - p.status.Done))
	if res.Error == "" {
		p.metrics.images.WithLabelValues("ok").Inc()
		return
	}
	p.status.Failed++
	p.status.Failures = append(p.status.Failures, res)
	p.metrics.images.WithLabelValues("failed").Inc()
	p.log.Warn("prefetch failed", "image", res.Image, "err", res.Error)
	if p.failures != nil {
		if ref, err := parseImageRef(res.Image); err == nil {
			reference := ref.Tag
			if ref.Digest != "" {
				reference = ref.Digest.String()
			}
			p.failures.PrefetchFailed(ref.Host, ref.Repo, reference, errors.New(res.Error))
		}
	}
}

// prefetchFailures hears of the images a prefetch run could not fetch.
type prefetchFailures interface {
	PrefetchFailed(registry, repository, reference string, err error)
}

func (p *prefetcher) end() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status.Running = false
	p.status.Finished = p.now()
	p.metrics.pending.Set(0)
	p.metrics.lastRun.Set(float64(p.status.Finished.Unix()))
}

// current returns the status of the last or current run; nil before any.
func (p *prefetcher) current() *prefetchStatus {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.status.Started.IsZero() {
		return nil
	}
	s := p.status
	s.Failures = slices.Clone(s.Failures)
	return &s
}

// prefetchMetrics count what prefetch runs did; no label names an image.
type prefetchMetrics struct {
	images  *prometheus.CounterVec
	blobs   prometheus.Counter
	bytes   prometheus.Counter
	pending prometheus.Gauge
	lastRun prometheus.Gauge
}

func newPrefetchMetrics(reg prometheus.Registerer) (*prefetchMetrics, error) {
	m := &prefetchMetrics{
		images: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "regmirror_prefetch_images_total",
			Help: "Listed images that prefetch runs fetched completely (result=ok) or could not (result=failed).",
		}, []string{"result"}),
		blobs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "regmirror_prefetch_blobs_total",
			Help: "Blobs that prefetch runs asked the mirror for and received whole (from the cache or the upstream).",
		}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "regmirror_prefetch_bytes_total",
			Help: "Bytes of the blobs counted by regmirror_prefetch_blobs_total.",
		}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "regmirror_prefetch_pending_images",
			Help: "Images the running prefetch run has still to fetch; 0 when none runs.",
		}),
		lastRun: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "regmirror_prefetch_last_run_timestamp_seconds",
			Help: "When the last prefetch run ended, as a Unix time; 0 before the first.",
		}),
	}
	m.images.WithLabelValues("ok")
	m.images.WithLabelValues("failed")
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.images, m.blobs, m.bytes, m.pending, m.lastRun} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register prefetch metrics: %w", err)
		}
	}
	return m, nil
}
