package mirror

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// blockingUsers is an Authenticator whose every check waits for release,
// recording how many run at once.
type blockingUsers struct {
	release chan struct{}

	mu              sync.Mutex
	running, maxRun int
}

func (b *blockingUsers) Authenticate(user, password string) bool {
	b.mu.Lock()
	b.running++
	b.maxRun = max(b.maxRun, b.running)
	b.mu.Unlock()
	<-b.release
	b.mu.Lock()
	b.running--
	b.mu.Unlock()
	return false
}

// A flood of logins from many clients runs at most MaxConcurrentChecks
// password checks at once; the others wait, and a waiter whose client
// leaves gives up without a check.
func TestLoginChecksAreCappedAtOnce(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		users := &blockingUsers{release: make(chan struct{})}
		g := newLoginGuard(accounts{local: users}, LoginLimits{MaxConcurrentChecks: 1}, time.Now)
		const logins = 4
		var wg sync.WaitGroup
		for i := range logins {
			wg.Go(func() {
				g.login(context.Background(), "192.0.2."+strconv.Itoa(i), "user"+strconv.Itoa(i), "guess")
			})
		}
		synctest.Wait() // one login holds the only slot, the others wait
		ctx, leave := context.WithCancel(context.Background())
		left := make(chan loginOutcome)
		go func() {
			left <- g.login(ctx, "192.0.2.99", "someone", "guess").outcome
		}()
		synctest.Wait()
		users.mu.Lock()
		running := users.running
		users.mu.Unlock()
		if running != 1 {
			t.Fatalf("%d password checks run at once, want 1", running)
		}
		leave()
		if outcome := <-left; outcome != loginFailed {
			t.Errorf("a login whose client left = %v, want failed", outcome)
		}
		close(users.release)
		wg.Wait()
		if users.maxRun != 1 {
			t.Errorf("up to %d password checks ran at once, want 1", users.maxRun)
		}
	})
}
