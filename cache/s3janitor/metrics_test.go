package s3janitor

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// A run counts in the metrics registered on the Registerer: what it
// evicted, what the bucket holds after, what it kept and why; a run that
// finds the lease held counts as held.
func TestMetrics(t *testing.T) {
	t.Parallel()
	b := newBucket(t)
	reg := prometheus.NewRegistry()
	r := b.replica(t, "replica-a", Options{MaxSize: 150, Registerer: reg})
	// A second janitor in the process shares the collectors.
	other := b.replica(t, "replica-b", Options{MaxSize: 150, Registerer: reg})
	x := b.put(t, 100)
	b.put(t, 100)
	r.Touch(x)
	b.clock.Advance(time.Minute)
	r.once(t)

	lease, err := r.leases.Acquire(context.Background(), leaseName, "replica-c", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Release(context.Background())
	other.once(t)

	want := map[string]float64{
		`regmirror_s3janitor_runs_total{result="ran"}`:    1,
		`regmirror_s3janitor_runs_total{result="held"}`:   1,
		`regmirror_s3janitor_evicted_blobs_total`:         1,
		`regmirror_s3janitor_evicted_bytes_total`:         100,
		`regmirror_s3janitor_bucket_bytes`:                100,
		`regmirror_s3janitor_bucket_blobs`:                1,
		`regmirror_s3janitor_budget_bytes`:                150,
		`regmirror_s3janitor_over_budget`:                 0,
		`regmirror_s3janitor_kept_blobs{reason="recent"}`: 0,
		`regmirror_s3janitor_bad_access_objects_total`:    0,
		`regmirror_s3janitor_dropped_touches_total`:       0,
	}
	got := gather(t, reg)
	for name, v := range want {
		if g, ok := got[name]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", name, g, ok, v)
		}
	}
}

// gather reads every counter and gauge series of reg as name{label="value"}.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			name := f.GetName()
			for _, l := range m.GetLabel() {
				name += "{" + l.GetName() + `="` + l.GetValue() + `"}`
			}
			switch {
			case m.Counter != nil:
				out[name] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[name] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}
