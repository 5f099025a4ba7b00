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
	// DefaultBreakerThreshold is how many operations in a row must get no
	// answer at all (connection refused, DNS failure, timeout), each after
	// its own retries, before the upstream is skipped: three is a pattern,
	// not one unlucky request, and an upstream that does not answer costs
	// every client a timeout.
	DefaultBreakerThreshold = 3
	// DefaultBreakerCooldown is how long a failing upstream is skipped
	// before one probe is let through.
	DefaultBreakerCooldown = 30 * time.Second
	// DefaultBreakerWindow is how far back the failure ratio looks.
	DefaultBreakerWindow = 30 * time.Second
	// DefaultBreakerMinRequests is how many operations the window must
	// hold before its ratio is judged: a few failures of a quiet mirror
	// are no verdict.
	DefaultBreakerMinRequests = 20
	// DefaultBreakerFailureRatio opens the breaker when half the
	// operations in the window fail: an upstream that answers most
	// requests is better used than skipped, since retries absorb the rest.
	DefaultBreakerFailureRatio = 0.5
)

// breakerBuckets is how many slices the window is counted in; it ages out
// a tenth of its width at a time.
const breakerBuckets = 10

// ErrCircuitOpen is the cause of an *Error for an operation that was not
// sent because the upstream failed too often and is in its cool-down.
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
	// failed: a 5xx or 408: it answers, but is failing.
	failed
	// unreachable: no answer at all (refused, DNS, timeout): it may be down.
	unreachable
	// inconclusive: the operation ended for reasons of our own (the caller
	// hung up, credentials could not be read); it says nothing.
	inconclusive
)

// breaker is a circuit breaker for one upstream. It opens when the share
// of failed operations over the last window reaches ratio (once the window
// holds minRequests operations), or at once when threshold operations in a
// row got no answer at all. Open, it rejects operations for cooldown, then
// admits one probe: the probe's answer closes it, its failure opens it
// again. This keeps clients of cached images from waiting on an
// upstream's timeouts on every request, while an upstream that fails a
// share of requests, which retries absorb, stays in use. It is safe for
// concurrent use.
type breaker struct {
	threshold   int // <= 0: never opens
	cooldown    time.Duration
	window      time.Duration
	minRequests int
	ratio       float64
	now         func() time.Time
	// changed is told of every state change, outside the lock.
	changed func(from, to breakerState, until time.Time)

	mu sync.Mutex
	// unanswered counts consecutive unreachable operations while closed;
	// counts holds the outcomes of the window; until is when an open
	// breaker admits a probe; probing is set while the probe runs.
	state      breakerState
	unanswered int
	counts     window
	until      time.Time
	probing    bool
}

// newBreaker returns a closed breaker with cfg's settings, whose defaults
// are filled in.
func newBreaker(cfg Config, now func() time.Time, changed func(from, to breakerState, until time.Time)) *breaker {
	return &breaker{
		threshold:   cfg.BreakerThreshold,
		cooldown:    cfg.BreakerCooldown,
		window:      cfg.BreakerWindow,
		minRequests: cfg.BreakerMinRequests,
		ratio:       cfg.BreakerFailureRatio,
		now:         now,
		changed:     changed,
	}
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
	case o == inconclusive:
	case o == answered && b.state != closed:
		b.close()
	case o == answered:
		b.unanswered = 0
		b.counts.add(b.now(), b.window, false)
	case probe || b.state == halfOpen:
		b.trip()
	case b.state == closed:
		b.judge(o)
	}
	to, until := b.state, b.until
	b.mu.Unlock()
	if from != to {
		b.changed(from, to, until)
	}
}

// judge counts a failure of a closed breaker and opens it when the
// upstream is unreachable or failing too often. b.mu is held.
func (b *breaker) judge(o outcome) {
	if b.threshold <= 0 {
		return
	}
	if o == unreachable {
		b.unanswered++
	}
	b.counts.add(b.now(), b.window, true)
	total, failures := b.counts.sum(b.now(), b.window)
	if b.unanswered >= b.threshold ||
		(total >= b.minRequests && float64(failures) >= b.ratio*float64(total)) {
		b.trip()
	}
}

// trip opens the breaker for a cool-down. b.mu is held.
func (b *breaker) trip() {
	b.state, b.until = open, b.now().Add(b.cooldown)
	b.unanswered, b.counts = 0, window{}
}

// close closes the breaker with a fresh window. b.mu is held.
func (b *breaker) close() {
	b.state, b.unanswered, b.counts = closed, 0, window{}
}

// current returns the state, for metrics and tests.
func (b *breaker) current() breakerState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state
}

// window counts operations and failures over a sliding time window, in
// breakerBuckets slices of it. The zero value is empty.
type window struct {
	buckets [breakerBuckets]bucket
}

// bucket counts the operations of one slice, which starts at start.
type bucket struct {
	start           time.Time
	total, failures int
}

// add counts one operation at now.
func (w *window) add(now time.Time, width time.Duration, failed bool) {
	slice := width / breakerBuckets
	start := now.Truncate(slice)
	b := &w.buckets[(start.UnixNano()/int64(slice))%breakerBuckets]
	if !b.start.Equal(start) {
		*b = bucket{start: start}
	}
	b.total++
	if failed {
		b.failures++
	}
}

// sum adds up the slices that are within width of now.
func (w *window) sum(now time.Time, width time.Duration) (total, failures int) {
	oldest := now.Truncate(width / breakerBuckets).Add(-width)
	for _, b := range w.buckets {
		if b.start.After(oldest) {
			total += b.total
			failures += b.failures
		}
	}
	return total, failures
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
	case e.StatusCode == 0:
		return unreachable
	case e.StatusCode >= 500, e.StatusCode == http.StatusRequestTimeout:
		return failed
	}
	return answered
}

// breakerChanged logs and exports a state change of c's breaker, and tells
// the hook when the upstream starts or stops being skipped.
func (c *Client) breakerChanged(from, to breakerState, until time.Time) {
	c.series.record(func(m *metrics, host string) { m.breakerState.WithLabelValues(host).Set(float64(to)) })
	if c.breakerHook != nil && (from == closed || to == closed) {
		c.breakerHook(c.host, to != closed)
	}
	switch to {
	case open:
		c.log.Warn("upstream failing: skipping it", "upstream", c.host, "from", from, "until", until)
	case halfOpen:
		c.log.Info("upstream cool-down over: probing it", "upstream", c.host)
	case closed:
		c.log.Info("upstream answering again", "upstream", c.host)
	}
}
