package upstream

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/regmirror/regmirror/internal/promreg"
)

// metrics are the client's Prometheus collectors. Several clients (one per
// upstream) share them through the `upstream` label.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	errors   *prometheus.CounterVec
	retries  *prometheus.CounterVec
	// breakerState and skipped show the circuit breaker and 429 pauses.
	breakerState *prometheus.GaugeVec
	skipped      *prometheus.CounterVec
	// fetched counts response body bytes as they are read.
	fetched *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "regmirror_upstream_requests_total",
			Help: "HTTP requests sent to upstream registries (including token requests, pings and redirects), by method and status class (2xx..5xx, or error when no answer came).",
		}, []string{"upstream", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "regmirror_upstream_request_duration_seconds",
			Help:    "Time from sending an upstream request to receiving its response headers.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 10),
		}, []string{"upstream", "method"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "regmirror_upstream_errors_total",
			Help: "Upstream operations that failed after retries, by operation.",
		}, []string{"upstream", "operation"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "regmirror_upstream_retries_total",
			Help: "Upstream operations retried after a temporary failure, by operation.",
		}, []string{"upstream", "operation"}),
		breakerState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "regmirror_upstream_breaker_state",
			Help: "Circuit breaker of each upstream: 0 closed (in use), 1 open (skipped after repeated failures), 2 half-open (one probe in flight).",
		}, []string{"upstream"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "regmirror_upstream_skipped_total",
			Help: "Upstream operations not sent, by reason: circuit_open (repeated failures) or rate_limited (waiting out a 429's Retry-After).",
		}, []string{"upstream", "reason"}),
		fetched: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "regmirror_upstream_fetched_bytes_total",
			Help: "Response body bytes received from upstream registries (blobs, manifests, tag lists, tokens), counted as they are read.",
		}, []string{"upstream"}),
	}
	var err error
	if m.requests, err = promreg.Register(reg, m.requests); err != nil {
		return nil, fmt.Errorf("upstream: registering metrics: %w", err)
	}
	if m.duration, err = promreg.Register(reg, m.duration); err != nil {
		return nil, fmt.Errorf("upstream: registering metrics: %w", err)
	}
	if m.errors, err = promreg.Register(reg, m.errors); err != nil {
		return nil, fmt.Errorf("upstream: registering metrics: %w", err)
	}
	if m.retries, err = promreg.Register(reg, m.retries); err != nil {
		return nil, fmt.Errorf("upstream: registering metrics: %w", err)
	}
	if m.breakerState, err = promreg.Register(reg, m.breakerState); err != nil {
		return nil, fmt.Errorf("upstream: registering metrics: %w", err)
	}
	if m.skipped, err = promreg.Register(reg, m.skipped); err != nil {
		return nil, fmt.Errorf("upstream: registering metrics: %w", err)
	}
	if m.fetched, err = promreg.Register(reg, m.fetched); err != nil {
		return nil, fmt.Errorf("upstream: registering metrics: %w", err)
	}
	return m, nil
}

// forget drops host's series, once its client is gone.
func (m *metrics) forget(host string) {
	labels := prometheus.Labels{"upstream": host}
	for _, v := range []interface{ DeletePartialMatch(prometheus.Labels) int }{
		m.requests, m.duration, m.errors, m.retries, m.breakerState, m.skipped, m.fetched,
	} {
		v.DeletePartialMatch(labels)
	}
}

// hostSeries are one client's series. Once the client forgets them
// (Options.ForgetMetricsOnClose), its requests still in flight record
// nothing: recording would put back the series Close dropped, for good.
type hostSeries struct {
	metrics *metrics
	host    string

	// mu makes forgetting wait out a recording in progress.
	mu   sync.RWMutex
	gone bool
}

// record runs add on the client's metrics and host, unless it forgot them.
func (s *hostSeries) record(add func(m *metrics, host string)) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.gone {
		add(s.metrics, s.host)
	}
}

// forget drops the client's series; later recordings do nothing.
func (s *hostSeries) forget() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gone = true
	s.metrics.forget(s.host)
}

// instrumented counts and times every HTTP round trip to one upstream.
type instrumented struct {
	inner  http.RoundTripper
	series *hostSeries
}

func (t *instrumented) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.inner.RoundTrip(req)
	code := "error"
	if err == nil {
		code = strconv.Itoa(resp.StatusCode/100) + "xx"
	}
	t.series.record(func(m *metrics, host string) {
		m.duration.WithLabelValues(host, req.Method).Observe(time.Since(start).Seconds())
		m.requests.WithLabelValues(host, req.Method, code).Inc()
		if err == nil && resp.Body != nil && resp.Body != http.NoBody {
			resp.Body = &countedBody{ReadCloser: resp.Body, fetched: m.fetched.WithLabelValues(host)}
		}
	})
	return resp, err
}

// countedBody adds the bytes read from an upstream's response to its
// counter as they arrive, so that a long download shows while it runs.
type countedBody struct {
	io.ReadCloser
	fetched prometheus.Counter
}

func (b *countedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.fetched.Add(float64(n))
	}
	return n, err
}
