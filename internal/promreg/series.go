package promreg

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Sample is one series of a counter or gauge: its labels and value.
type Sample struct {
	Labels map[string]string
	Value  float64
}

// Series reads the counter and gauge series c holds now, so that the
// package owning c can report them as typed values rather than have others
// look them up by metric name. Histograms and summaries are skipped.
func Series(c prometheus.Collector) []Sample {
	ch := make(chan prometheus.Metric)
	go func() {
		c.Collect(ch)
		close(ch)
	}()
	var out []Sample
	for m := range ch {
		var d dto.Metric
		if m.Write(&d) != nil {
			continue
		}
		var v float64
		switch {
		case d.Counter != nil:
			v = d.GetCounter().GetValue()
		case d.Gauge != nil:
			v = d.GetGauge().GetValue()
		default:
			continue
		}
		labels := make(map[string]string, len(d.GetLabel()))
		for _, l := range d.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		out = append(out, Sample{Labels: labels, Value: v})
	}
	return out
}
