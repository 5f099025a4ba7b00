package main

import (
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func TestSections(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, list string
		want       []string
	}{
		{"default leaves scaleout out", "default", defaultSections},
		{"default and scaleout run in the report's order", "scaleout,default", allSections},
		{"one section", "scaleout", []string{"scaleout"}},
		{"named sections keep the report's order", "crowd, memory", []string{"memory", "crowd"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := sections(tt.list)
			if err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("sections(%q) = %v, %v; want %v", tt.list, got, err, tt.want)
			}
		})
	}
	if _, err := sections("default,scale-out"); err == nil {
		t.Error("an unknown section was accepted")
	}
	if slices.Contains(defaultSections, "scaleout") {
		t.Error("scaleout is among the default sections; scripts/bench.sh asks for it by name")
	}
}

// The forward failures are read from a real Prometheus exposition: the
// samples of every label set are summed, and a counter with a longer name
// that starts with the same one is not counted.
func TestScrapeCounterSumsTheSamplesOfOneCounter(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	failures := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bench_forward_failures_total"}, []string{"kind"})
	longer := prometheus.NewCounter(prometheus.CounterOpts{Name: "bench_forward_failures_total_other"})
	reg.MustRegister(failures, longer)
	failures.WithLabelValues("blob").Add(2)
	failures.WithLabelValues("manifest").Add(1)
	longer.Add(40)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()

	for name, want := range map[string]int{"bench_forward_failures_total": 3, "bench_not_exposed_total": 0} {
		got, err := scrapeCounter(t.Context(), srv.URL, name)
		if err != nil || got != want {
			t.Errorf("scrapeCounter(%s) = %d, %v; want %d", name, got, err, want)
		}
	}
}
