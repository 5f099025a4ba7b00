// Package promreg registers Prometheus collectors for packages that may be
// instantiated more than once in a process (several upstream clients, a
// store reopened by a test): the second instance shares the first one's
// collector instead of failing with AlreadyRegisteredError.
package promreg

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Register adds c to reg and returns it, or returns the identical collector
// registered before. A nil reg registers nothing and returns c.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if reg == nil {
		return c, nil
	}
	err := reg.Register(c)
	var already prometheus.AlreadyRegisteredError
	if errors.As(err, &already) {
		if existing, ok := already.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	if err != nil {
		return c, err
	}
	return c, nil
}
