package upstream

import (
	"context"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/regmirror/regmirror/internal/registrytest"
)

// The monitor reads what every client on its registerer counted, clients
// made after it included: requests, the failed ones (5xx or no answer),
// failed operations and the breaker's state.
func TestMonitorReportsEveryClientsHealth(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t, registrytest.Options{})
	if _, err := reg.PushImage("library/alpine", "3", registrytest.ImageOptions{}); err != nil {
		t.Fatal(err)
	}
	prom := prometheus.NewRegistry()
	monitor, err := NewMonitor(prom)
	if err != nil {
		t.Fatal(err)
	}
	hub, _ := newClient(t, reg, Config{Host: "docker.io"}, nil, Options{Registerer: prom})
	down := registrytest.New(t, registrytest.Options{})
	down.SetDown(true)
	ghcr, _ := newClient(t, down, Config{Host: "ghcr.io", Retries: -1}, nil, Options{Registerer: prom})
	ctx := context.Background()
	if _, err := hub.HeadManifest(ctx, "library/alpine", "3"); err != nil {
		t.Fatal(err)
	}
	if _, err := ghcr.HeadManifest(ctx, "library/alpine", "3"); err == nil {
		t.Fatal("a registry that is down answered")
	}

	got := monitor.Health()
	hosts := make([]string, len(got))
	for i, h := range got {
		hosts[i] = h.Host
	}
	if !slices.Equal(hosts, []string{"docker.io", "ghcr.io"}) {
		t.Fatalf("hosts = %v, want docker.io and ghcr.io, by name", hosts)
	}
	if h := got[0]; h.Breaker != "closed" || h.Requests == 0 || h.FailedRequests != 0 || h.Errors != 0 {
		t.Errorf("docker.io = %+v, want closed, requests, no failures", h)
	}
	if h := got[1]; h.Breaker != "closed" || h.Requests == 0 || h.FailedRequests != h.Requests || h.Errors != 1 {
		t.Errorf("ghcr.io = %+v, want every request failed and one failed operation", h)
	}
}
