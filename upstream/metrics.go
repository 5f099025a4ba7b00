package upstream

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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
	}
	var err error
	if m.requests, err = register(reg, m.requests); err != nil {
		return nil, err
	}
	if m.duration, err = register(reg, m.duration); err != nil {
		return nil, err
	}
	if m.errors, err = register(reg, m.errors); err != nil {
		return nil, err
	}
	if m.retries, err = register(reg, m.retries); err != nil {
		return nil, err
	}
	if m.breakerState, err = register(reg, m.breakerState); err != nil {
		return nil, err
	}
	if m.skipped, err = register(reg, m.skipped); err != nil {
		return nil, err
	}
	return m, nil
}

// register adds c to reg, or returns the identical collector another client
// registered before. A nil reg registers nothing.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if reg == nil {
		return c, nil
	}
	err := reg.Register(c)
	var already prometheus.AlreadyRegisteredError
	if errors.As(err, &already) {
		if existing, ok := already.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	if err != nil {
		return c, fmt.Errorf("upstream: registering metrics: %w", err)
	}
	return c, nil
}

// instrumented counts and times every HTTP round trip to one upstream.
type instrumented struct {
	inner   http.RoundTripper
	host    string
	metrics *metrics
}

func (t *instrumented) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.inner.RoundTrip(req)
	t.metrics.duration.WithLabelValues(t.host, req.Method).Observe(time.Since(start).Seconds())
	code := "error"
	if err == nil {
		code = strconv.Itoa(resp.StatusCode/100) + "xx"
	}
	t.metrics.requests.WithLabelValues(t.host, req.Method, code).Inc()
	return resp, err
}
