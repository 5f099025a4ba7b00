package eviction

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Evictor's collectors; they have no labels.
type metrics struct {
	passes     prometheus.Counter
	blobs      prometheus.Counter
	freedBytes prometheus.Counter
	budget     prometheus.Gauge
	pinned     prometheus.Gauge
	pinsOver   prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		passes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "regmirror_eviction_passes_total",
			Help: "Eviction passes that removed blobs to bring the cache within its budget.",
		}),
		blobs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "regmirror_eviction_blobs_total",
			Help: "Blobs evicted from the cache.",
		}),
		freedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "regmirror_eviction_freed_bytes_total",
			Help: "Bytes freed by eviction.",
		}),
		budget: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "regmirror_cache_budget_bytes",
			Help: "The cache's size budget (cache.max_size); 0 means unlimited.",
		}),
		pinned: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "regmirror_cache_pinned_bytes",
			Help: "Bytes of pinned blobs and manifests, as of the last eviction pass that was due.",
		}),
		pinsOver: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "regmirror_cache_pins_over_budget",
			Help: "1 when pinned content alone keeps the last eviction pass from reaching its target: only unpinned content was evicted.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.passes, m.blobs, m.freedBytes, m.budget, m.pinned, m.pinsOver} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register eviction metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) record(p Pass) {
	m.passes.Inc()
	m.blobs.Add(float64(p.Removed))
	m.freedBytes.Add(float64(p.Freed))
}
