package mirror

import (
	"context"
	"crypto/sha256"
	"math"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Defaults of LoginLimits.
const (
	DefaultMaxFailedLoginsPerClient = 10
	DefaultMaxFailedLoginsPerUser   = 30
	DefaultFailedLoginWindow        = 15 * time.Minute
)

// LoginLimits bound password guessing and the CPU it burns. A failed login
// is a password check that failed (wrong password or unknown user); a
// password that failed moments ago is answered from memory and not counted
// again. Once a client address (an IPv6 client's /64) or a user name has
// failed MaxFailures* times, its logins are not checked until the window
// refills; token requests for pushes and writes are answered 429 with
// Retry-After, while pulls go on as anonymous ones, never with a 429. The
// zero value means the defaults; a negative field means no limit.
type LoginLimits struct {
	// MaxFailuresPerClient is how many failed logins one client address
	// may make per FailureWindow. Zero means DefaultMaxFailedLoginsPerClient.
	MaxFailuresPerClient int
	// MaxFailuresPerUser is how many failed logins for one user name, from
	// any address, are allowed per FailureWindow, which stops guessing from
	// many addresses. Zero means DefaultMaxFailedLoginsPerUser.
	MaxFailuresPerUser int
	// FailureWindow is the time over which the failures are counted: the
	// allowance refills evenly over it. Zero means DefaultFailedLoginWindow.
	FailureWindow time.Duration
	// MaxConcurrentChecks caps the password checks (bcrypt comparisons)
	// running at once, so a flood of logins leaves cores for pulls; the
	// others wait their turn. Zero means half the CPUs, at least one.
	MaxConcurrentChecks int
}

func (l LoginLimits) withDefaults() LoginLimits {
	if l.MaxFailuresPerClient == 0 {
		l.MaxFailuresPerClient = DefaultMaxFailedLoginsPerClient
	}
	if l.MaxFailuresPerUser == 0 {
		l.MaxFailuresPerUser = DefaultMaxFailedLoginsPerUser
	}
	if l.FailureWindow <= 0 {
		l.FailureWindow = DefaultFailedLoginWindow
	}
	if l.MaxConcurrentChecks <= 0 {
		l.MaxConcurrentChecks = max(1, runtime.GOMAXPROCS(0)/2)
	}
	return l
}

// loginOutcome is what a login attempt came to.
type loginOutcome int

const (
	loginFailed      loginOutcome = iota
	loginOK                       // the password is the user's
	loginLimited                  // not checked: too many failures
	loginUnavailable              // not checked: the user directory failed
)

// loginResult is what login came to: the outcome, who logged in for
// loginOK, and for loginLimited how long until the next check is allowed.
type loginResult struct {
	outcome loginOutcome
	who     principal
	wait    time.Duration
}

// loginGuard checks passwords under LoginLimits. Safe for concurrent use.
type loginGuard struct {
	users   accounts
	now     func() time.Time
	checks  chan struct{} // one value per password check running
	clients failureBuckets
	names   failureBuckets
}

func newLoginGuard(users accounts, l LoginLimits, now func() time.Time) *loginGuard {
	l = l.withDefaults()
	return &loginGuard{
		users:   users,
		now:     now,
		checks:  make(chan struct{}, l.MaxConcurrentChecks),
		clients: newFailureBuckets(l.MaxFailuresPerClient, l.FailureWindow),
		names:   newFailureBuckets(l.MaxFailuresPerUser, l.FailureWindow),
	}
}

// recaller is an Authenticator that remembers recent answers (Htpasswd):
// those cost no check and are not counted again. Other Authenticators are
// checked and counted every time.
type recaller interface {
	recall(user, password string) (ok, known bool)
}

// login checks user's password for a client, unless the client or the
// user is limited. Answers the users remember come first, so that asking
// twice within one request gives the same outcome and a known password is
// never locked out. A login the user directory could not check is not a
// failure: nothing was guessed.
func (g *loginGuard) login(ctx context.Context, client, user, password string) loginResult {
	if who, known := g.users.recall(user, password); known {
		return resultOf(who)
	}
	now := g.now()
	if wait := max(g.clients.wait(client, now), g.names.wait(user, now)); wait > 0 {
		return loginResult{outcome: loginLimited, wait: wait}
	}
	who, err := g.check(ctx, user, password)
	switch {
	case ctx.Err() != nil:
		return loginResult{outcome: loginFailed} // the client left: whatever was checked, it is gone
	case err != nil:
		return loginResult{outcome: loginUnavailable}
	case !who.loggedIn():
		now = g.now()
		g.clients.fail(client, now)
		g.names.fail(user, now)
	}
	return resultOf(who)
}

// check runs one password check when a slot is free.
func (g *loginGuard) check(ctx context.Context, user, password string) (principal, error) {
	select {
	case g.checks <- struct{}{}:
	case <-ctx.Done():
		return principal{}, ctx.Err()
	}
	defer func() { <-g.checks }()
	return g.users.check(ctx, user, password)
}

func resultOf(who principal) loginResult {
	if who.loggedIn() {
		return loginResult{outcome: loginOK, who: who}
	}
	return loginResult{outcome: loginFailed}
}

// maxTrackedKeys bounds the memory of each failure table. When it is full
// of keys that are still counting, new keys count as limited: a flood from
// more addresses than that locks logins (never pulls) until it refills.
const maxTrackedKeys = 1 << 16

// failureBuckets are token buckets of failed logins by key: each key may
// fail burst times, and the allowance refills evenly over the window.
// A key whose bucket is full is forgotten. Safe for concurrent use.
type failureBuckets struct {
	burst  int // < 0: unlimited
	refill rate.Limit

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

func newFailureBuckets(burst int, window time.Duration) failureBuckets {
	return failureBuckets{
		burst:   burst,
		refill:  rate.Limit(float64(max(burst, 1)) / window.Seconds()),
		buckets: make(map[string]*rate.Limiter),
	}
}

// wait returns how long key must wait before its next login is checked;
// zero when it may go ahead.
func (b *failureBuckets) wait(key string, now time.Time) time.Duration {
	if b.burst < 0 {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	l, ok := b.buckets[bucketKey(key)]
	if !ok {
		if len(b.buckets) < maxTrackedKeys {
			return 0
		}
		return b.untilOneToken(0)
	}
	return b.untilOneToken(l.TokensAt(now))
}

// fail counts a failed login of key.
func (b *failureBuckets) fail(key string, now time.Time) {
	if b.burst < 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	key = bucketKey(key)
	l, ok := b.buckets[key]
	if !ok {
		if len(b.buckets) >= maxTrackedKeys {
			b.forgetRefilled(now)
		}
		if len(b.buckets) >= maxTrackedKeys {
			return // wait counts the key as limited
		}
		l = rate.NewLimiter(b.refill, b.burst)
		b.buckets[key] = l
	}
	l.AllowN(now, 1)
}

// forgetRefilled drops the keys whose allowance is whole again. Called with
// b.mu held.
func (b *failureBuckets) forgetRefilled(now time.Time) {
	for key, l := range b.buckets {
		if l.TokensAt(now) >= float64(b.burst) {
			delete(b.buckets, key)
		}
	}
}

// bucketKey bounds the memory a key takes: a user name may be as long as
// a request header.
func bucketKey(key string) string {
	if len(key) <= 64 {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return string(sum[:])
}

func (b *failureBuckets) untilOneToken(tokens float64) time.Duration {
	if tokens >= 1 {
		return 0
	}
	return time.Duration((1 - tokens) / float64(b.refill) * float64(time.Second))
}

// tooManyLogins answers a login refused by the limits: 429 TOOMANYREQUESTS
// (the distribution spec's code) with the seconds until the next try.
func tooManyLogins(wait time.Duration) error {
	seconds := int64(math.Ceil(wait.Seconds()))
	return &Error{Code: "TOOMANYREQUESTS", Status: http.StatusTooManyRequests, RetryAfter: strconv.FormatInt(max(seconds, 1), 10),
		Message: "too many failed logins; try again in " + strconv.FormatInt(max(seconds, 1), 10) + "s"}
}

// clientAddress is the key a client's failed logins are counted under: its
// IP address, or the /64 of an IPv6 address, since one host commonly holds
// a whole /64.
func clientAddress(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	addr = addr.Unmap()
	if addr.Is6() {
		return netip.PrefixFrom(addr, 64).Masked().String()
	}
	return addr.String()
}
