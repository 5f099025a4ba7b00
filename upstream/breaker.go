package upstream

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"
)

// Defaults of the circuit breaker.
const (
	// DefaultBreakerThreshold is how many operations in a row must fail
	// (each after its own retries) before the upstream is skipped: three
	// is a pattern, not one unlucky request.
	DefaultBreakerThreshold = 3
	// DefaultBreakerCooldown is how long a failing upstream is skipped
	// before one probe is let through.
	DefaultBreakerCooldown = 30 * time.Second
)

// ErrCircuitOpen is the cause of an *Error for an operation that was not
// sent because the upstream failed repeatedly and is in its cool-down.
var ErrCircuitOpen = errors.New("upstream skipped after repeated failures (circuit open)")

// breakerState is where a circuit breaker stands.
type breakerState int

const (
	// closed: operations go upstream; consecutive failures are counted.
	closed breakerState = iota
	// open: operations fail at once until the cool-down ends.
	open
	// halfOpen: the cool-down ended; one probe operation is in flight and
	// every other operation fails at once until it settles.
	halfOpen
)

var breakerStateNames = [...]string{"closed", "open", "half-open"}

func (s breakerState) String() string { return breakerStateNames[s] }

// outcome is what an operation's result says about the upstream's health.
type outcome int

const (
	// answered: the upstream answered (even 404 or 401): it is up.
	answered outcome = iota
	// failed: no answer in time, or a 5xx: it may be down.
	failed
	// inconclusive: the operation ended for reasons of our own (the caller
	// hung up, credentials could not be read); it says nothing.
	inconclusive
)

// breaker is a circuit breaker for one upstream: after threshold operations
// in a row fail, it rejects operations for cooldown, then admits one probe;
// the probe's answer closes it, its failure opens it again. This keeps
// clients of cached images from waiting on an upstream's timeouts on every
// request. It is safe for concurrent use.
type breaker struct {
	threshold int // <= 0: never opens
	cooldown  time.Duration
	now       func() time.Time
	// changed is told of every state change, outside the lock.
	changed func(from, to breakerState, until time.Time)

	mu sync.Mutex
	// failures counts consecutive failed operations while closed; until is
	// when an open breaker admits a probe; probing is set while the probe runs.
	state    breakerState
	failures int
	until    time.Time
	probing  bool
}

// admit reports whether an operation may go upstream. probe is true for the
// one operation a half-open breaker lets through; the caller must report
// its outcome with record.
func (b *breaker) admit() (probe bool, until time.Time, err error) {
	b.mu.Lock()
	switch {
	case b.state == closed:
		b.mu.Unlock()
		return false, time.Time{}, nil
	case b.state == open && !b.now().Before(b.until):
		b.state, b.probing = halfOpen, true
		b.mu.Unlock()
		b.changed(open, halfOpen, time.Time{})
		return true, time.Time{}, nil
	case b.state == halfOpen && !b.probing:
		b.probing = true
		b.mu.Unlock()
		return true, time.Time{}, nil
	}
	until = b.until
	b.mu.Unlock()
	return false, until, ErrCircuitOpen
}

// record takes the outcome of an admitted operation.
func (b *breaker) record(probe bool, o outcome) {
	b.mu.Lock()
	from := b.state
	if probe {
		b.probing = false
	}
	switch {
	case o == answered:
		b.state, b.failures = closed, 0
	case o == failed && (probe || b.state == halfOpen):
		b.trip()
	case o == failed && b.state == closed:
		b.failures++
		if b.threshold > 0 && b.failures >= b.threshold {
			b.trip()
		}
	}
	to, until := b.state, b.until
	b.mu.Unlock()
	if from != to {
		b.changed(from, to, until)
	}
}

// trip opens the breaker for a cool-down. b.mu is held.
func (b *breaker) trip() {
	b.state, b.failures, b.until = open, 0, b.now().Add(b.cooldown)
}

// current returns the state, for metrics and tests.
func (b *breaker) current() breakerState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state
}

// outcomeOf classifies an operation's error for the breaker: only a missing
// answer or a server error counts against the upstream. A 429 does not: it
// has its own pause (see rateLimit).
func outcomeOf(err error) outcome {
	var e *Error
	switch {
	case err == nil:
		return answered
	case errors.Is(err, context.Canceled), errors.Is(err, errCredentials),
		errors.Is(err, ErrCircuitOpen), errors.Is(err, ErrRateLimited):
		return inconclusive
	case !errors.As(err, &e):
		return inconclusive
	case e.StatusCode == 0, e.StatusCode >= 500, e.StatusCode == http.StatusRequestTimeout:
		return failed
	}
	return answered
}

// breakerChanged logs and exports a state change of c's breaker.
func (c *Client) breakerChanged(from, to breakerState, until time.Time) {
	c.metrics.breakerState.WithLabelValues(c.host).Set(float64(to))
	switch to {
	case open:
		c.log.Warn("upstream failing: skipping it", "upstream", c.host, "from", from, "until", until)
	case halfOpen:
		c.log.Info("upstream cool-down over: probing it", "upstream", c.host)
	case closed:
		c.log.Info("upstream answering again", "upstream", c.host)
	}
}
