package edge

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/regmirror/regmirror/internal/promreg"
)

// Metrics are the edge's collectors. A nil *Metrics counts nothing.
type Metrics struct {
	open         prometheus.Gauge
	refusedConns *prometheus.CounterVec
	requests     *prometheus.CounterVec
}

// NewMetrics registers the edge's collectors on reg; a nil reg registers
// none (the metrics still count, unseen).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	var (
		m   Metrics
		err error
	)
	if m.open, err = promreg.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "regmirror_connections_open",
		Help: "Client connections open on the registry listener.",
	})); err != nil {
		return nil, fmt.Errorf("edge metrics: %w", err)
	}
	if m.refusedConns, err = promreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "regmirror_connections_refused_total",
		Help: "Client connections closed at once because a cap was reached: reason is client (one client's cap) or total.",
	}, []string{"reason"})); err != nil {
		return nil, fmt.Errorf("edge metrics: %w", err)
	}
	if m.requests, err = promreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "regmirror_requests_refused_total",
		Help: "Requests answered at the edge with an error before reaching the registry: reason is path (not canonical) or body (a body where none is allowed).",
	}, []string{"reason"})); err != nil {
		return nil, fmt.Errorf("edge metrics: %w", err)
	}
	// Every series exists from the start, so a rate over them needs no
	// first refusal.
	for _, reason := range []string{refusedClient, refusedTotal} {
		m.refusedConns.WithLabelValues(reason)
	}
	for _, reason := range []string{refusedPath, refusedBody} {
		m.requests.WithLabelValues(reason)
	}
	return &m, nil
}

func (m *Metrics) setOpen(n int) {
	if m != nil {
		m.open.Set(float64(n))
	}
}

func (m *Metrics) refusedConn(reason string) {
	if m != nil {
		m.refusedConns.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) refusedRequest(reason string) {
	if m != nil {
		m.requests.WithLabelValues(reason).Inc()
	}
}
