package mirror

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// DefaultNotFoundTTL is how long an upstream 404 is remembered when
// Remote.NotFoundTTL is zero: long enough that a crash-looping deployment
// pulling a missing image asks upstream a few times a minute, not a few
// times a second; short enough that a freshly pushed tag shows up quickly.
const DefaultNotFoundTTL = 30 * time.Second

// maxNotFound bounds the remembered 404s: clients choose the names, so
// without a bound they could grow the mirror's memory without end.
const maxNotFound = 10000

func (r *Remote) notFoundTTL() time.Duration {
	switch {
	case r.NotFoundTTL == 0:
		return DefaultNotFoundTTL
	case r.NotFoundTTL < 0:
		return 0
	}
	return r.NotFoundTTL
}

// staleWindow is how old (since its last confirmation upstream) a cached
// tag may be and still be served when revalidation fails with err.
func (r *Remote) staleWindow(err error) time.Duration {
	if r.NoStaleOnNotFound && upstreamStatus(err) == http.StatusNotFound {
		return 0
	}
	return r.tagTTL() + r.staleIfError()
}

// notFoundCache remembers, per upstream reference, that the upstream
// answered 404 and until when to believe it, so that clients retrying a
// missing image in a loop do not hammer the upstream. It is safe for
// concurrent use; the zero value is ready to use.
type notFoundCache struct {
	mu sync.Mutex
	// until maps a reference key (tagKey or manifestKey) to when its 404 expires.
	until map[string]time.Time
}

// remember records a 404 for key, believed until then.
func (c *notFoundCache) remember(key string, now, until time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.until == nil {
		c.until = map[string]time.Time{}
	}
	if len(c.until) >= maxNotFound {
		c.sweepLocked(now)
	}
	if len(c.until) >= maxNotFound {
		for k := range c.until { // full of live entries: drop any one
			delete(c.until, k)
			break
		}
	}
	c.until[key] = until
}

// sweepLocked drops the expired entries. c.mu is held.
func (c *notFoundCache) sweepLocked(now time.Time) {
	for k, until := range c.until {
		if !now.Before(until) {
			delete(c.until, k)
		}
	}
}

// check returns a *knownNotFound while key's 404 is remembered at now.
func (c *notFoundCache) check(key string, now time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	until, ok := c.until[key]
	switch {
	case !ok:
		return nil
	case !now.Before(until):
		delete(c.until, key)
		return nil
	}
	return &knownNotFound{until: until}
}

// knownNotFound answers for the upstream when it said 404 moments ago.
type knownNotFound struct{ until time.Time }

func (e *knownNotFound) Error() string {
	return fmt.Sprintf("the upstream answered 404 recently; not asking again before %s", e.until.UTC().Format(time.RFC3339))
}

// HTTPStatus makes the remembered answer look like the upstream's own.
func (e *knownNotFound) HTTPStatus() int { return http.StatusNotFound }

// askUnlessNotFound runs ask unless the upstream said 404 for key within
// the Remote's NotFoundTTL, and remembers a 404 that ask gets now.
func (m *Mirror) askUnlessNotFound(rem *Remote, key string, ask func() (manifest, error)) (manifest, error) {
	ttl := rem.notFoundTTL()
	if ttl == 0 {
		return ask()
	}
	if err := m.notFound.check(key, m.now()); err != nil {
		return manifest{}, err
	}
	mf, err := ask()
	if upstreamStatus(err) == http.StatusNotFound {
		now := m.now()
		m.notFound.remember(key, now, now.Add(ttl))
	}
	return mf, err
}

// failureResult is the lookup metric's result for a failed lookup.
func failureResult(err error) string {
	var known *knownNotFound
	if errors.As(err, &known) {
		return resultNotFoundCached
	}
	return resultError
}
