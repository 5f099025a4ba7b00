package s3janitor

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/regmirror/regmirror/internal/promreg"
)

// metrics are the Janitor's Prometheus collectors. Their labels are
// bounded: a run's result and a reason to keep, never a digest or a
// replica.
type metrics struct {
	runs         *prometheus.CounterVec
	evicted      prometheus.Counter
	evictedBytes prometheus.Counter
	bucketBytes  prometheus.Gauge
	bucketBlobs  prometheus.Gauge
	budget       prometheus.Gauge
	overBudget   prometheus.Gauge
	kept         *prometheus.GaugeVec
	badAccess    prometheus.Counter
	dropped      prometheus.Counter
}

// Results of a run, the runs counter's label.
const (
	resultRan    = "ran"
	resultHeld   = "held"
	resultFailed = "failed"
)

// newMetrics builds the collectors and registers them on reg, which may
// be nil; ones registered already (a second Janitor in the process) are
// shared.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "regmirror_s3janitor_runs_total",
			Help: "Janitor runs of this replica, by result: ran (held the lease), held (another replica did), failed.",
		}, []string{"result"}),
		evicted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "regmirror_s3janitor_evicted_blobs_total",
			Help: "Blobs this replica's janitor removed from the bucket.",
		}),
		evictedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "regmirror_s3janitor_evicted_bytes_total",
			Help: "Bytes of the blobs this replica's janitor removed from the bucket.",
		}),
		bucketBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "regmirror_s3janitor_bucket_bytes",
			Help: "Bytes of the blobs in the bucket, after this replica's last janitor run.",
		}),
		bucketBlobs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "regmirror_s3janitor_bucket_blobs",
			Help: "Blobs in the bucket, after this replica's last janitor run.",
		}),
		budget: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "regmirror_s3janitor_budget_bytes",
			Help: "The budget of the blobs in the bucket (storage.s3.max_size).",
		}),
		overBudget: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "regmirror_s3janitor_over_budget",
			Help: "1 when blobs that must stay left the bucket over budget at this replica's last janitor run.",
		}),
		kept: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "regmirror_s3janitor_kept_blobs",
			Help: "Blobs this replica's last janitor run would have evicted but kept, by reason.",
		}, []string{"reason"}),
		badAccess: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "regmirror_s3janitor_bad_access_objects_total",
			Help: "Access objects ignored by janitor runs as not access records, or too large.",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "regmirror_s3janitor_dropped_touches_total",
			Help: "Accesses this replica dropped with its batch of unflushed accesses full.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	m.runs, err = promreg.Register(reg, m.runs)
	for _, c := range []*prometheus.Counter{&m.evicted, &m.evictedBytes, &m.badAccess, &m.dropped} {
		if err == nil {
			*c, err = promreg.Register(reg, *c)
		}
	}
	for _, g := range []*prometheus.Gauge{&m.bucketBytes, &m.bucketBlobs, &m.budget, &m.overBudget} {
		if err == nil {
			*g, err = promreg.Register(reg, *g)
		}
	}
	if err == nil {
		m.kept, err = promreg.Register(reg, m.kept)
	}
	if err != nil {
		return m, fmt.Errorf("register s3janitor metrics: %w", err)
	}
	return m, nil
}

// record counts a run.
func (m *metrics) record(s Stats, err error) {
	m.dropped.Add(float64(s.DroppedTouches))
	switch {
	case err != nil:
		m.runs.WithLabelValues(resultFailed).Inc()
	case !s.Ran:
		m.runs.WithLabelValues(resultHeld).Inc()
		return
	default:
		m.runs.WithLabelValues(resultRan).Inc()
	}
	m.evicted.Add(float64(s.Evicted))
	m.evictedBytes.Add(float64(s.EvictedBytes))
	m.badAccess.Add(float64(s.BadAccessObjects))
	if err != nil {
		return // the listing may be cut short
	}
	m.bucketBytes.Set(float64(s.Bytes - s.EvictedBytes))
	m.bucketBlobs.Set(float64(s.Blobs - s.Evicted - s.Vanished))
	m.overBudget.Set(boolValue(s.OverBudget))
	for reason, n := range map[string]int{"recent": s.KeptRecent, "leased": s.KeptLeased, "caller": s.KeptByCaller,
		"refilled": s.KeptRefilled} {
		m.kept.WithLabelValues(reason).Set(float64(n))
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
