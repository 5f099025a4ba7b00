package upstream

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Bounds of the pause after a 429.
const (
	// defaultRetryAfter is the pause after a 429 without a usable Retry-After.
	defaultRetryAfter = time.Minute
	// maxRetryAfter caps the pause, so that a bogus header cannot silence an
	// upstream for days; asking again after it costs one request.
	maxRetryAfter = time.Hour
)

// ErrRateLimited is the cause of an *Error for an operation that was not
// sent because the upstream answered 429 and its Retry-After has not passed.
var ErrRateLimited = errors.New("rate limited by the upstream")

// rateLimit remembers until when an upstream asked not to be contacted.
// Docker Hub limits pulls per account or address, not per repository, so
// one pause covers the whole upstream. It is safe for concurrent use.
type rateLimit struct {
	mu    sync.Mutex
	until time.Time
}

// pause extends the pause to until and reports whether it did.
func (r *rateLimit) pause(until time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !until.After(r.until) {
		return false
	}
	r.until = until
	return true
}

// pausedUntil reports whether the upstream is paused at now, and until when.
func (r *rateLimit) pausedUntil(now time.Time) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.until, now.Before(r.until)
}

// retryAfter reads a Retry-After header, delay-seconds or an HTTP date
// (RFC 9110, section 10.2.3), as a pause from now, within maxRetryAfter.
func retryAfter(header string, now time.Time) time.Duration {
	header = strings.TrimSpace(header)
	var d time.Duration
	if secs, err := strconv.ParseInt(header, 10, 64); err == nil {
		d = time.Duration(min(max(secs, 0), int64(maxRetryAfter/time.Second))) * time.Second
	} else if at, err := http.ParseTime(header); err == nil {
		d = at.Sub(now)
	} else {
		return defaultRetryAfter
	}
	return min(max(d, 0), maxRetryAfter)
}

// watchRateLimit is the transport under authentication that sees every
// response of the upstream, including the token endpoint's, and pauses the
// upstream on a 429.
type watchRateLimit struct {
	inner http.RoundTripper
	now   func() time.Time
	// paused is told when a 429 starts or extends the pause.
	paused func(until time.Time)
	limit  *rateLimit
}

func (t *watchRateLimit) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.inner.RoundTrip(req)
	if err == nil && resp.StatusCode == http.StatusTooManyRequests {
		now := t.now()
		if until := now.Add(retryAfter(resp.Header.Get("Retry-After"), now)); t.limit.pause(until) {
			t.paused(until)
		}
	}
	return resp, err
}

// rateLimited logs the start or extension of a 429 pause.
func (c *Client) rateLimited(until time.Time) {
	c.log.Warn("upstream rate limited the mirror: pausing requests to it", "upstream", c.host, "until", until)
}
