package mirror

import (
	"fmt"
)

// remoteTable is the set of Remotes the mirror routes to. It is immutable
// once built (its dynamicRemotes guards itself): SetRemotes replaces the
// whole table, so a request sees either the old table or the new one,
// never a mix.
type remoteTable struct {
	byHost  map[string]*Remote
	dynamic *dynamicRemotes // nil without a NewRemote
	// closers release the idle connections of the configured Remotes'
	// upstreams once the table is replaced.
	closers []func()
}

func newRemoteTable(remotes []Remote, newRemote func(string) (Remote, error), m *metrics) (*remoteTable, error) {
	t := &remoteTable{byHost: make(map[string]*Remote, len(remotes))}
	for _, r := range remotes {
		closer := closerOf(r.Upstream) // before prepareRemote wraps the upstream
		rem, err := prepareRemote(r, m)
		if err != nil {
			return nil, err
		}
		if _, dup := t.byHost[rem.Host]; dup {
			return nil, fmt.Errorf("remote %q configured twice", rem.Host)
		}
		t.byHost[rem.Host] = rem
		if closer != nil {
			t.closers = append(t.closers, closer)
		}
	}
	if newRemote != nil {
		t.dynamic = newDynamicRemotes(newRemote, m, maxDynamicRemotes)
	}
	return t, nil
}

// SetRemotes replaces the upstream registries the mirror serves, and the
// function that makes Remotes for other hosts (nil: refuse them), as
// Options.Remotes and Options.NewRemote would set them. It is how a
// configuration reload changes upstream credentials, endpoints and
// settings without a restart.
//
// The swap is atomic. Requests already routed finish with the Remote they
// started with: a blob download in flight keeps streaming from the old
// upstream client to every client sharing it, and the cache records it as
// usual. New requests use the new Remotes. The old upstreams are asked to
// drop their idle connections (their Close, if they have one, must leave
// them usable). Each Remote gets a new fetch cap, so while old transfers
// finish an upstream may briefly see up to twice max_concurrent_fetches.
//
// On an invalid Remote, SetRemotes returns an error and changes nothing.
func (m *Mirror) SetRemotes(remotes []Remote, newRemote func(host string) (Remote, error)) error {
	next, err := newRemoteTable(remotes, newRemote, m.metrics)
	if err != nil {
		return fmt.Errorf("mirror: %w", err)
	}
	prev := m.remotes.Swap(next)
	for host := range prev.byHost {
		if _, kept := next.byHost[host]; !kept {
			m.metrics.forgetUpstream(host)
		}
	}
	prev.release()
	return nil
}

// release drops the idle connections of a replaced table's upstreams.
func (t *remoteTable) release() {
	for _, closeIdle := range t.closers {
		closeIdle()
	}
	if t.dynamic != nil {
		t.dynamic.releaseAll()
	}
}

// releaseAll releases the resources of every Remote made so far; they stay
// usable by the requests that hold them.
func (d *dynamicRemotes) releaseAll() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, e := range d.byHost {
		if e.closer != nil {
			e.closer()
		}
	}
}
