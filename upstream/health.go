package upstream

import (
	"cmp"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/regmirror/regmirror/internal/promreg"
)

// Health is one upstream registry as its clients' counters see it.
type Health struct {
	Host string
	// Breaker is the circuit breaker's state: "closed" (in use), "open"
	// (skipped after repeated failures) or "half-open" (one probe in
	// flight); "" when no client of Host has reported one.
	Breaker string
	// Requests counts HTTP requests sent (tokens and redirects included);
	// FailedRequests those answered 5xx or not at all.
	Requests       int64
	FailedRequests int64
	// Errors counts operations that failed after retries.
	Errors int64
}

// Monitor reads the health of every client whose metrics went to one
// registerer (Options.Registerer), the clients made later included. It
// is safe for concurrent use.
type Monitor struct{ metrics *metrics }

// NewMonitor returns the monitor of the clients registered on reg.
func NewMonitor(reg prometheus.Registerer) (*Monitor, error) {
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Monitor{metrics: m}, nil
}

// Health reports every upstream host with series, by name.
func (mo *Monitor) Health() []Health {
	byHost := map[string]*Health{}
	health := func(host string) *Health {
		h, ok := byHost[host]
		if !ok {
			h = &Health{Host: host}
			byHost[host] = h
		}
		return h
	}
	for _, s := range promreg.Series(mo.metrics.breakerState) {
		health(s.Labels["upstream"]).Breaker = breakerName(s.Value)
	}
	for _, s := range promreg.Series(mo.metrics.requests) {
		h := health(s.Labels["upstream"])
		h.Requests += int64(s.Value)
		if code := s.Labels["code"]; code == "5xx" || code == "error" {
			h.FailedRequests += int64(s.Value)
		}
	}
	for _, s := range promreg.Series(mo.metrics.errors) {
		health(s.Labels["upstream"]).Errors += int64(s.Value)
	}
	out := make([]Health, 0, len(byHost))
	for _, h := range byHost {
		out = append(out, *h)
	}
	slices.SortFunc(out, func(a, b Health) int { return cmp.Compare(a.Host, b.Host) })
	return out
}

// breakerName names a value of the breaker gauge.
func breakerName(v float64) string {
	if i := int(v); float64(i) == v && i >= 0 && i < len(breakerStateNames) {
		return breakerStateNames[i]
	}
	return "unknown"
}
