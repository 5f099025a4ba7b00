package promreg

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRegisterSharesTheFirstCollector(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	newCounter := func() prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "x_total", Help: "x"})
	}
	first, err := Register(reg, newCounter())
	if err != nil {
		t.Fatal(err)
	}
	second, err := Register(reg, newCounter())
	if err != nil {
		t.Fatal(err)
	}
	if first != second {
		t.Fatal("the second registration did not return the first collector")
	}
	if _, err := Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: "x_total", Help: "other help"})); err == nil {
		t.Fatal("a conflicting collector registered without error")
	}
	if c, err := Register(nil, newCounter()); err != nil || c == nil {
		t.Fatalf("nil registerer: %v, %v", c, err)
	}
}

func TestSeriesReadsCountersAndGauges(t *testing.T) {
	t.Parallel()
	counter := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "c_total", Help: "c"}, []string{"host"})
	counter.WithLabelValues("a").Add(2)
	counter.WithLabelValues("b").Add(3)
	gauge := prometheus.NewGauge(prometheus.GaugeOpts{Name: "g", Help: "g"})
	gauge.Set(7)
	histogram := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "h", Help: "h"})
	histogram.Observe(1)

	byHost := map[string]float64{}
	for _, s := range Series(counter) {
		byHost[s.Labels["host"]] += s.Value
	}
	if len(byHost) != 2 || byHost["a"] != 2 || byHost["b"] != 3 {
		t.Errorf("counter series = %v, want a=2, b=3", byHost)
	}
	if s := Series(gauge); len(s) != 1 || s[0].Value != 7 {
		t.Errorf("gauge series = %+v, want one of 7", s)
	}
	if s := Series(histogram); len(s) != 0 {
		t.Errorf("histogram series = %+v, want none", s)
	}
}
