package notify

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/regmirror/regmirror/internal/promreg"
)

// Reasons an event is dropped.
const (
	droppedQueueFull     = "queue_full"
	droppedUndeliverable = "undeliverable"
)

// metrics are the notifier's collectors, labelled by endpoint (its name or
// index in the configuration: as many as the operator lists).
type metrics struct {
	sent     *prometheus.CounterVec
	failures *prometheus.CounterVec
	dropped  *prometheus.CounterVec
	queued   *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "regmirror_notifications_sent_total",
			Help: "Webhook events delivered (the endpoint answered 2xx).",
		}, []string{"endpoint"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "regmirror_notifications_failures_total",
			Help: "Webhook delivery attempts that failed (no answer, or not 2xx); each is retried until the retries are used up.",
		}, []string{"endpoint"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "regmirror_notifications_dropped_total",
			Help: "Webhook events lost, by reason: queue_full (the endpoint's queue was full) or undeliverable (every retry failed).",
		}, []string{"endpoint", "reason"}),
		queued: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "regmirror_notifications_queued",
			Help: "Webhook events waiting to be sent to each endpoint.",
		}, []string{"endpoint"}),
	}
	var err error
	if m.sent, err = promreg.Register(reg, m.sent); err != nil {
		return nil, err
	}
	if m.failures, err = promreg.Register(reg, m.failures); err != nil {
		return nil, err
	}
	if m.dropped, err = promreg.Register(reg, m.dropped); err != nil {
		return nil, err
	}
	if m.queued, err = promreg.Register(reg, m.queued); err != nil {
		return nil, err
	}
	return m, nil
}
