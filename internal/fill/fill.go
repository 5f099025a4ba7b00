// Package fill coalesces fills: work that fetches one thing from an
// upstream for every caller that wants it at the same time. The first
// caller for a key starts the fill; callers that come while it runs join
// it and get what it gets. A fill runs detached from the caller that
// started it, under a timeout of its own, so that the leader hanging up
// fails none of the followers; each caller still stops waiting when its
// own context ends.
//
// A fill hands its followers a value either when it ends (a manifest) or,
// through Publish, as soon as it has one they can use while it goes on (a
// download they stream from); it stays joinable until it ends.
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

// Fill is one fill in flight.
type Fill[V any] struct {
	ready     chan struct{} // closed once value or err is set
	readyOnce sync.Once
	value     V
	err       error
	ended     chan struct{} // closed when the fill has left its group
	followers int           // callers that joined it; guarded by the group's mu
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

// Ended is closed once the fill has ended and left its group, so that a
// new call for its key starts a new fill.
func (f *Fill[V]) Ended() <-chan struct{} { return f.ended }

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
	f, joined := g.join(ctx, key, timeout, run)
	v, err = f.wait(ctx)
	return v, joined, err
}

// join returns the fill in flight for key, or starts one.
func (g *Group[K, V]) join(ctx context.Context, key K, timeout time.Duration,
	run func(ctx context.Context, f *Fill[V]) (V, error)) (*Fill[V], bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if f, ok := g.fills[key]; ok {
		f.followers++
		return f, true
	}
	if g.fills == nil {
		g.fills = make(map[K]*Fill[V])
	}
	f := &Fill[V]{ready: make(chan struct{}), ended: make(chan struct{})}
	g.fills[key] = f
	go g.run(g.detach(ctx), key, f, timeout, run)
	return f, false
}

func (g *Group[K, V]) detach(ctx context.Context) context.Context {
	if g.Detach != nil {
		return g.Detach(ctx)
	}
	return context.WithoutCancel(ctx)
}

func (g *Group[K, V]) run(ctx context.Context, key K, f *Fill[V], timeout time.Duration,
	run func(ctx context.Context, f *Fill[V]) (V, error)) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	v, err := run(ctx, f)
	g.mu.Lock()
	delete(g.fills, key)
	g.mu.Unlock()
	f.settle(v, err)
	close(f.ended)
}

// InFlight reports whether a fill for key is running.
func (g *Group[K, V]) InFlight(key K) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	_, ok := g.fills[key]
	return ok
}
