package mirror_test

import (
	"net/http"
	"slices"
	"testing"
)

// Clients choose the method token; the method label must not grow with it.
func TestRequestMetricsBoundTheMethodLabel(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	for _, method := range []string{"BREW", "PROPFIND", "X-1", http.MethodGet} {
		e.do(t, method, "/v2/", nil)
	}
	families, err := e.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var methods []string
	for _, f := range families {
		if f.GetName() != "regmirror_http_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "method" {
					methods = append(methods, l.GetValue())
				}
			}
		}
	}
	slices.Sort(methods)
	if want := []string{"GET", "other"}; !slices.Equal(methods, want) {
		t.Fatalf("method label values = %v, want %v", methods, want)
	}
}
