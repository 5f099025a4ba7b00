package main

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metricsSnapshot maps a metric family's name to its counter and gauge
// samples, as /metrics would show them at one moment.
type metricsSnapshot map[string][]sample

type sample struct {
	labels map[string]string
	value  float64
}

// gatherMetrics reads every registered collector once.
func gatherMetrics(g prometheus.Gatherer) (metricsSnapshot, error) {
	families, err := g.Gather()
	if err != nil {
		return nil, fmt.Errorf("reading metrics: %w", err)
	}
	snap := make(metricsSnapshot, len(families))
	for _, f := range families {
		for _, m := range f.GetMetric() {
			var v float64
			switch {
			case m.Counter != nil:
				v = m.GetCounter().GetValue()
			case m.Gauge != nil:
				v = m.GetGauge().GetValue()
			default:
				continue // histograms and summaries are not needed here
			}
			labels := make(map[string]string, len(m.GetLabel()))
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			snap[f.GetName()] = append(snap[f.GetName()], sample{labels: labels, value: v})
		}
	}
	return snap, nil
}
