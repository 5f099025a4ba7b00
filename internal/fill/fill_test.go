package fill

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Concurrent callers of one key share one run; each learns whether it led.
func TestConcurrentCallersShareOneRun(t *testing.T) {
	var g Group[string, int]
	var runs atomic.Int32
	release := make(chan struct{})
	const callers = 20
	var wg sync.WaitGroup
	var led atomic.Int32
	started := make(chan struct{})
	var once sync.Once
	for range callers {
		wg.Go(func() {
			v, joined, err := g.Do(t.Context(), "k", 0, func(context.Context, *Fill[int]) (int, error) {
				runs.Add(1)
				once.Do(func() { close(started) })
				<-release
				return 42, nil
			})
			if err != nil || v != 42 {
				t.Errorf("Do = %d, %v; want 42", v, err)
			}
			if !joined {
				led.Add(1)
			}
		})
	}
	<-started
	waitForFollowers(&g, "k", callers-1)
	close(release)
	wg.Wait()
	if runs.Load() != 1 || led.Load() != 1 {
		t.Fatalf("%d runs, %d leaders; want 1 and 1", runs.Load(), led.Load())
	}
}

// waitForFollowers returns once n callers have joined the fill for key.
func waitForFollowers[V any](g *Group[string, V], key string, n int) {
	for {
		g.mu.Lock()
		f := g.fills[key]
		joined := f != nil && f.followers >= n
		g.mu.Unlock()
		if joined {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// The leader hanging up fails none of the others: the run goes on detached.
func TestLeaderLeavingFailsNoFollower(t *testing.T) {
	var g Group[string, string]
	leaderCtx, hangUp := context.WithCancel(t.Context())
	release := make(chan struct{})
	running := make(chan struct{})
	leaderDone := make(chan error)
	go func() {
		_, _, err := g.Do(leaderCtx, "k", 0, func(ctx context.Context, _ *Fill[string]) (string, error) {
			close(running)
			<-release
			return "bytes", ctx.Err()
		})
		leaderDone <- err
	}()
	<-running
	followerDone := make(chan string)
	go func() {
		v, joined, err := g.Do(t.Context(), "k", 0, func(context.Context, *Fill[string]) (string, error) {
			t.Error("a second run started")
			return "", nil
		})
		if err != nil || !joined {
			t.Errorf("follower: joined %v, err %v", joined, err)
		}
		followerDone <- v
	}()
	waitForFollowers(&g, "k", 1)
	hangUp()
	if err := <-leaderDone; !errors.Is(err, context.Canceled) {
		t.Fatalf("the leader got %v after hanging up, want context.Canceled", err)
	}
	close(release)
	if v := <-followerDone; v != "bytes" {
		t.Fatalf("follower got %q, want the run's value", v)
	}
}

// A run is bounded by its timeout, not by its callers' contexts.
func TestRunEndsAtItsTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var g Group[string, int]
		_, _, err := g.Do(context.Background(), "k", time.Minute, func(ctx context.Context, _ *Fill[int]) (int, error) {
			<-ctx.Done()
			return 0, ctx.Err()
		})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Do = %v, want the run's deadline", err)
		}
	})
}

// Publish hands callers a value while the run goes on; callers that come
// later get it at once, and a call after the run ended starts a new one.
func TestPublishedValueReachesCallersBeforeTheEnd(t *testing.T) {
	var g Group[string, int]
	release := make(chan struct{})
	var fill *Fill[int]
	v, joined, err := g.Do(t.Context(), "k", 0, func(_ context.Context, f *Fill[int]) (int, error) {
		fill = f
		f.Publish(7)
		<-release
		return 8, nil
	})
	if v != 7 || joined || err != nil {
		t.Fatalf("leader: %d, joined %v, %v; want the published 7", v, joined, err)
	}
	v, joined, err = g.Do(t.Context(), "k", 0, func(context.Context, *Fill[int]) (int, error) {
		t.Error("a second run started while the first went on")
		return 0, nil
	})
	if v != 7 || !joined || err != nil {
		t.Fatalf("follower: %d, joined %v, %v; want the published 7", v, joined, err)
	}
	close(release)
	<-fill.Ended()
	v, joined, _ = g.Do(t.Context(), "k", 0, func(context.Context, *Fill[int]) (int, error) { return 9, nil })
	if v != 9 || joined {
		t.Fatalf("after the end: %d, joined %v; want a new run's 9", v, joined)
	}
}

// A caller stops waiting when its own context ends.
func TestCallerStopsWaitingAtItsContext(t *testing.T) {
	var g Group[string, int]
	release := make(chan struct{})
	defer close(release)
	running := make(chan struct{})
	go func() {
		_, _, _ = g.Do(context.Background(), "k", 0, func(context.Context, *Fill[int]) (int, error) {
			close(running)
			<-release
			return 1, nil
		})
	}()
	<-running
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, _, err := g.Do(ctx, "k", 0, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Do with an ended context = %v, want context.Canceled", err)
	}
}

type userKey struct{}

// Detach decides what of the leader's context the run keeps.
func TestDetachStripsTheLeadersRights(t *testing.T) {
	g := Group[string, string]{Detach: func(ctx context.Context) context.Context {
		return context.WithValue(context.WithoutCancel(ctx), userKey{}, nil)
	}}
	ctx := context.WithValue(t.Context(), userKey{}, "alice")
	v, _, err := g.Do(ctx, "k", 0, func(ctx context.Context, _ *Fill[string]) (string, error) {
		who, _ := ctx.Value(userKey{}).(string)
		return who, nil
	})
	if err != nil || v != "" {
		t.Fatalf("the run saw user %q (%v); want none", v, err)
	}
}

// A fill started under the lock publishes its first value before any
// other caller can see it, can be cancelled through the fill, and can leave
// the group before its run returns, after which a new fill starts.
func TestStartLockedPublishesAtOnceAndLeavesEarly(t *testing.T) {
	var g Group[string, *int]
	first := 1
	left := make(chan struct{})
	release := make(chan struct{})
	g.Lock()
	f := g.StartLocked(t.Context(), "k", Limit{}, func(*Fill[*int]) *int { return &first },
		func(ctx context.Context, f *Fill[*int]) (*int, error) {
			g.Lock()
			f.LeaveLocked()
			g.Unlock()
			close(left)
			<-release
			<-ctx.Done()
			return f.Value(), context.Cause(ctx)
		})
	if v := f.Value(); v != &first {
		t.Fatalf("the started fill's value is %v, want the begun one", v)
	}
	g.Unlock()
	<-left
	g.Lock()
	_, stillThere := g.LookupLocked("k")
	g.Unlock()
	if stillThere {
		t.Fatal("the fill is still in the group after it left")
	}
	stop := errors.New("stopped")
	f.Cancel(stop)
	close(release)
	<-f.Ended()
	if v, _, _ := g.Do(t.Context(), "k", 0, func(context.Context, *Fill[*int]) (*int, error) { return nil, nil }); v != nil {
		t.Fatal("a call after the fill left joined it")
	}
}
