package mirror

import "github.com/regmirror/regmirror/internal/promreg"

// Traffic is what the mirror served since it started, read from its
// counters.
type Traffic struct {
	// Hits are lookups answered from the cache, stale serves included.
	Hits int64
	// Misses are lookups that went upstream, coalesced ones included.
	Misses int64
	// CacheBytes and UpstreamBytes are blob bytes sent to clients, by
	// where they came from.
	CacheBytes    int64
	UpstreamBytes int64
}

// Traffic reads the mirror's lookup and served-bytes counters. It is safe
// for concurrent use.
func (m *Mirror) Traffic() Traffic {
	var t Traffic
	for _, s := range promreg.Series(m.metrics.lookups) {
		switch s.Labels["result"] {
		case "hit", "stale":
			t.Hits += int64(s.Value)
		case "miss", "coalesced":
			t.Misses += int64(s.Value)
		}
	}
	for _, s := range promreg.Series(m.metrics.bytesServed) {
		switch s.Labels["source"] {
		case "cache":
			t.CacheBytes += int64(s.Value)
		case "upstream":
			t.UpstreamBytes += int64(s.Value)
		}
	}
	return t
}

// FetchesInFlight counts, by upstream host, the upstream fetches running
// now (see Remote.MaxConcurrentFetches). It is safe for concurrent use.
func (m *Mirror) FetchesInFlight() map[string]int64 {
	out := map[string]int64{}
	for _, s := range promreg.Series(m.metrics.fetchesInFlight) {
		out[s.Labels["upstream"]] += int64(s.Value)
	}
	return out
}
