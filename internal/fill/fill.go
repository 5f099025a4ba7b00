// Package fill coalesces fills: work that fetches one thing from an
// upstream for every caller that wants it at the same time. The first
// caller for a key starts the fill; callers that come while it runs join
// it and get what it gets. A fill runs detached from the caller that
// started it, under a time limit of its own, so that the leader hanging up
// fails none of the followers; each caller still stops waiting when its
// own context ends.
//
// A fill hands its followers a value either when it ends (a manifest) or
// as soon as it starts (a download they stream from, see StartLocked); it
// stays joinable until it ends or leaves its group.
//
// Do is the whole mechanism for callers that wait for a value. Callers
// that follow a fill in their own way (the cache's downloads, whose
// readers stream from a file as it grows) use its parts under the group's
// lock: LookupLocked, StartLocked, EachLocked and Fill.LeaveLocked.
package fill

import (
	"context"
	"sync"
	"time"
)

// Group coalesces fills of values of type V by key. The zero Group is
// ready to use; it is safe for concurrent use.
type Group[K comparable, V any] struct {
	// Detach, when set, makes the context a fill runs with from its
	// leader's; the default, context.WithoutCancel, keeps its values.
	// Work shared by several callers must decide nothing with the rights
	// of the one that happened to start it: Detach is where they go.
	Detach func(ctx context.Context) context.Context

	mu    sync.Mutex
	fills map[K]*Fill[V]
}

// Limit bounds a fill's run: it ends after Timeout, with Cause as its
// context's cause. A zero Timeout means no bound.
type Limit struct {
	Timeout time.Duration
	Cause   error
}

// Fill is one fill in flight.
type Fill[V any] struct {
	ready     chan struct{} // closed once value or err is set
	readyOnce sync.Once
	value     V
	err       error
	ended     chan struct{} // closed when the run has returned
	cancel    context.CancelCauseFunc
	leave     func() // removes the fill from its group; the group's lock held
	followers int    // callers that joined it; guarded by the group's lock
}

// Publish hands v to the fill's callers before the fill ends, so that they
// can use it while it goes on; later callers get v at once. Only the first
// Publish, or the fill's end, counts.
func (f *Fill[V]) Publish(v V) { f.settle(v, nil) }

func (f *Fill[V]) settle(v V, err error) {
	f.readyOnce.Do(func() {
		f.value, f.err = v, err
		close(f.ready)
	})
}

// Value returns the value the fill published, or the zero value while it
// has none.
func (f *Fill[V]) Value() V {
	select {
	case <-f.ready:
		return f.value
	default:
		var zero V
		return zero
	}
}

// Cancel stops the fill's run, with cause as its context's cause.
func (f *Fill[V]) Cancel(cause error) { f.cancel(cause) }

// Ended is closed once the fill's run has returned.
func (f *Fill[V]) Ended() <-chan struct{} { return f.ended }

// LeaveLocked takes the fill out of its group before its run returns, so
// that callers for its key start a new fill from then on; the group's lock
// must be held. A run that leaves early can finish its callers' reads
// after it has left.
func (f *Fill[V]) LeaveLocked() { f.leave() }

// wait returns the fill's value once published or ended, or ctx's error.
func (f *Fill[V]) wait(ctx context.Context) (V, error) {
	select {
	case <-f.ready:
		return f.value, f.err
	case <-ctx.Done():
		var zero V
		return zero, context.Cause(ctx)
	}
}

// Do runs run once for all concurrent callers with key and returns its
// value: the one it published, or else the one it returned. joined
// reports that this caller waited on a fill another caller started. run
// gets a context detached from ctx (see Group.Detach) that ends after
// timeout, or never when timeout is zero.
func (g *Group[K, V]) Do(ctx context.Context, key K, timeout time.Duration,
	run func(ctx context.Context, f *Fill[V]) (V, error)) (v V, joined bool, err error) {
	g.Lock()
	f, joined := g.LookupLocked(key)
	if joined {
		f.followers++
	} else {
		f = g.StartLocked(ctx, key, Limit{Timeout: timeout}, nil, run)
	}
	g.Unlock()
	v, err = f.wait(ctx)
	return v, joined, err
}

// Lock and Unlock guard the group's table of fills and, with it, the state
// of its callers that must change at the same moment (the cache counts its
// downloads' readers under it).
func (g *Group[K, V]) Lock()   { g.mu.Lock() }
func (g *Group[K, V]) Unlock() { g.mu.Unlock() }

// LookupLocked returns the fill in flight for key; the lock must be held.
func (g *Group[K, V]) LookupLocked(key K) (*Fill[V], bool) {
	f, ok := g.fills[key]
	return f, ok
}

// StartLocked starts a fill for key, which must have none in flight; the
// lock must be held. The fill runs run in a goroutine of its own, with a
// context detached from ctx and bounded by limit; when begin is set, its
// value is published at once (before any other caller can see the fill),
// and begin gets the fill to keep, e.g. to cancel it.
func (g *Group[K, V]) StartLocked(ctx context.Context, key K, limit Limit, begin func(f *Fill[V]) V,
	run func(ctx context.Context, f *Fill[V]) (V, error)) *Fill[V] {
	if g.fills == nil {
		g.fills = make(map[K]*Fill[V])
	}
	runCtx, stop := g.detach(ctx), context.CancelFunc(func() {})
	if limit.Timeout > 0 {
		runCtx, stop = context.WithTimeoutCause(runCtx, limit.Timeout, limit.Cause)
	}
	runCtx, cancel := context.WithCancelCause(runCtx)
	f := &Fill[V]{ready: make(chan struct{}), ended: make(chan struct{})}
	f.cancel = func(cause error) {
		cancel(cause)
		stop()
	}
	f.leave = func() {
		if g.fills[key] == f {
			delete(g.fills, key)
		}
	}
	g.fills[key] = f
	if begin != nil {
		f.Publish(begin(f))
	}
	go g.run(runCtx, f, run)
	return f
}

func (g *Group[K, V]) detach(ctx context.Context) context.Context {
	if g.Detach != nil {
		return g.Detach(ctx)
	}
	return context.WithoutCancel(ctx)
}

func (g *Group[K, V]) run(ctx context.Context, f *Fill[V], run func(ctx context.Context, f *Fill[V]) (V, error)) {
	defer f.cancel(nil)
	v, err := run(ctx, f)
	g.Lock()
	f.leave()
	g.Unlock()
	f.settle(v, err)
	close(f.ended)
}

// EachLocked calls fn with every fill in flight; the lock must be held.
func (g *Group[K, V]) EachLocked(fn func(key K, f *Fill[V])) {
	for k, f := range g.fills {
		fn(k, f)
	}
}
