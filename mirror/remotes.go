package mirror

import (
	"errors"
	"fmt"
	"sync"

	"github.com/regmirror/regmirror/internal/ociserver"
)

// maxDynamicRemotes bounds the Remotes made by Options.NewRemote that the
// mirror keeps: clients choose those hosts, so without a bound they could
// grow the mirror's memory (and its metrics) without end.
const maxDynamicRemotes = 64

// prepareRemote checks r and returns the copy the mirror serves from: host
// canonical, fetches capped.
func prepareRemote(r Remote, m *metrics) (*Remote, error) {
	if r.Upstream == nil {
		return nil, fmt.Errorf("remote %q has no upstream", r.Host)
	}
	r.Host = canonicalHost(r.Host)
	if r.Host == "" {
		return nil, errors.New("a remote has no host")
	}
	if err := checkPatterns(r.Allow); err != nil {
		return nil, fmt.Errorf("remote %s: allow: %w", r.Host, err)
	}
	if err := checkPatterns(r.Deny); err != nil {
		return nil, fmt.Errorf("remote %s: deny: %w", r.Host, err)
	}
	if err := checkPatterns(r.Expose); err != nil {
		return nil, fmt.Errorf("remote %s: expose: %w", r.Host, err)
	}
	limit := r.MaxConcurrentFetches
	if limit == 0 {
		limit = DefaultMaxConcurrentFetches
	}
	if limit > 0 {
		r.Upstream = newLimitedUpstream(r.Upstream, limit, r.Host, m)
	}
	return &r, nil
}

// remote returns the Remote serving host: a configured one, else one made
// by Options.NewRemote. A host that is neither is refused before any
// connection is made, so clients cannot make the mirror connect wherever
// they like.
func (m *Mirror) remote(host string) (*Remote, error) {
	table := m.remotes.Load()
	if rem, ok := table.byHost[host]; ok {
		return rem, nil
	}
	if table.dynamic == nil {
		return nil, newError(ociserver.CodeNameUnknown, "registry %q is not mirrored here", truncate(host))
	}
	rem, err := table.dynamic.get(host)
	if err != nil {
		var mirrorErr *Error
		if errors.As(err, &mirrorErr) {
			return nil, err
		}
		return nil, &Error{Code: ociserver.CodeNameUnknown, Message: fmt.Sprintf("registry %q is not mirrored here", truncate(host)), Err: err}
	}
	return rem, nil
}

// dynamicRemotes are the Remotes made on demand by Options.NewRemote, the
// least recently used dropped beyond a bound. It is safe for concurrent use.
type dynamicRemotes struct {
	create  func(host string) (Remote, error)
	metrics *metrics
	limit   int

	mu sync.Mutex
	// clock counts lookups; an entry's lastUsed is the clock at its last lookup.
	clock  uint64
	byHost map[string]*dynamicRemote
}

type dynamicRemote struct {
	remote *Remote
	// closer releases what the caller's Upstream holds (idle connections);
	// nil when it has nothing to release.
	closer   func()
	lastUsed uint64
}

func newDynamicRemotes(create func(string) (Remote, error), m *metrics, limit int) *dynamicRemotes {
	return &dynamicRemotes{create: create, metrics: m, limit: limit, byHost: map[string]*dynamicRemote{}}
}

// get returns host's Remote, making it on first use. Making one is cheap
// (no connection), so it happens under the lock.
func (d *dynamicRemotes) get(host string) (*Remote, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.clock++
	if e, ok := d.byHost[host]; ok {
		e.lastUsed = d.clock
		return e.remote, nil
	}
	r, err := d.create(host)
	if err != nil {
		return nil, err
	}
	if canonicalHost(r.Host) != host {
		return nil, fmt.Errorf("NewRemote(%q) returned a remote for %q", host, r.Host)
	}
	closer := closerOf(r.Upstream)
	rem, err := prepareRemote(r, d.metrics)
	if err != nil {
		return nil, err
	}
	if len(d.byHost) >= d.limit {
		d.evictOldestLocked()
	}
	d.byHost[host] = &dynamicRemote{remote: rem, closer: closer, lastUsed: d.clock}
	return rem, nil
}

// peek returns host's Remote if one was made, without making one or
// counting a use.
func (d *dynamicRemotes) peek(host string) (*Remote, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.byHost[host]
	if !ok {
		return nil, false
	}
	return e.remote, true
}

// evictOldestLocked drops the least recently used Remote. Requests still
// using it finish normally; the next request for its host makes a new one.
func (d *dynamicRemotes) evictOldestLocked() {
	var oldest string
	for host, e := range d.byHost {
		if oldest == "" || e.lastUsed < d.byHost[oldest].lastUsed {
			oldest = host
		}
	}
	e := d.byHost[oldest]
	delete(d.byHost, oldest)
	d.metrics.forgetUpstream(oldest)
	if e.closer != nil {
		e.closer()
	}
}

// closerOf returns how to release an Upstream's idle resources, if it has any.
func closerOf(u Upstream) func() {
	switch c := u.(type) {
	case interface{ Close() }:
		return c.Close
	case interface{ Close() error }:
		return func() { _ = c.Close() }
	}
	return nil
}
