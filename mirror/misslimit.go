package mirror

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/regmirror/regmirror/internal/ociserver"
)

// Defaults of MissLimits. A cold pull of a large multi-platform image costs
// a dozen misses, a CI farm behind one NAT address pulling tens of images
// at once a few hundred: the per-client burst allows that, while a client
// inventing names and tags to burn the mirror's upstream quota is held to
// the rate. The total bounds what all clients together can send upstream.
const (
	DefaultMissRatePerClient  = 20
	DefaultMissBurstPerClient = 300
	DefaultMissRateTotal      = 200
	DefaultMissBurstTotal     = 2000
)

// maxMissClients bounds the client addresses whose buckets are kept; past
// it the bucket idle longest goes (a full bucket is what a new one is).
const maxMissClients = 10000

// MissLimits bound the requests that the mirror cannot answer from its
// cache and passes on to an upstream (tag revalidations, manifest and blob
// fills, tag listings, visibility probes), per client address and in all,
// as token buckets: a rate per second and a burst. Zero values mean the
// defaults.
type MissLimits struct {
	PerClientRate  float64
	PerClientBurst int
	TotalRate      float64
	TotalBurst     int
}

func (l MissLimits) withDefaults() MissLimits {
	if l.PerClientRate <= 0 {
		l.PerClientRate = DefaultMissRatePerClient
	}
	if l.PerClientBurst <= 0 {
		l.PerClientBurst = DefaultMissBurstPerClient
	}
	if l.TotalRate <= 0 {
		l.TotalRate = DefaultMissRateTotal
	}
	if l.TotalBurst <= 0 {
		l.TotalBurst = DefaultMissBurstTotal
	}
	return l
}

// missLimiter enforces MissLimits. Safe for concurrent use.
type missLimiter struct {
	limits MissLimits
	now    func() time.Time
	total  *rate.Limiter

	mu      sync.Mutex
	clients map[string]*clientBucket
}

type clientBucket struct {
	limiter *rate.Limiter
	used    time.Time
}

func newMissLimiter(l MissLimits, now func() time.Time) *missLimiter {
	l = l.withDefaults()
	return &missLimiter{limits: l, now: now, total: rate.NewLimiter(rate.Limit(l.TotalRate), l.TotalBurst),
		clients: make(map[string]*clientBucket)}
}

// allow takes one miss from client's bucket and the total, or reports how
// long to wait. A refusal by the total gives the client's token back, so a
// flood from elsewhere does not drain an honest client's bucket.
// An internal client has no bucket of its own: only the total applies.
func (ml *missLimiter) allow(client string, internal bool) (ok bool, retryAfter time.Duration) {
	now := ml.now()
	var r *rate.Reservation
	if !internal {
		r = ml.bucket(client, now).ReserveN(now, 1)
		if delay := r.DelayFrom(now); delay > 0 {
			r.CancelAt(now)
			return false, delay
		}
	}
	t := ml.total.ReserveN(now, 1)
	if delay := t.DelayFrom(now); delay > 0 {
		t.CancelAt(now)
		if r != nil {
			r.CancelAt(now)
		}
		return false, delay
	}
	return true, 0
}

func (ml *missLimiter) bucket(client string, now time.Time) *rate.Limiter {
	ml.mu.Lock()
	defer ml.mu.Unlock()
	if b, ok := ml.clients[client]; ok {
		b.used = now
		return b.limiter
	}
	if len(ml.clients) >= maxMissClients {
		ml.dropIdlestLocked()
	}
	b := &clientBucket{limiter: rate.NewLimiter(rate.Limit(ml.limits.PerClientRate), ml.limits.PerClientBurst), used: now}
	ml.clients[client] = b
	return b.limiter
}

func (ml *missLimiter) dropIdlestLocked() {
	var idlest string
	var at time.Time
	for c, b := range ml.clients {
		if idlest == "" || b.used.Before(at) {
			idlest, at = c, b.used
		}
	}
	delete(ml.clients, idlest)
}

// clientAddrKey carries the client's address in a request's context.
type clientAddrKey struct{}

// internalKey marks the requests the daemon makes of its own mirror.
type internalKey struct{}

// AsInternalClient marks ctx as the daemon's own, for requests it serves
// to itself through ServeHTTP (a prefetch list): they are exempt from the
// per-client miss limit, whose burst a long list would exhaust, and remain
// under the total. Only code in the process can set it; no request from
// the network carries it.
func AsInternalClient(ctx context.Context) context.Context {
	return context.WithValue(ctx, internalKey{}, true)
}

// withClientAddr records the address a miss is charged to: the client's
// host without the port, which changes with every connection, and an IPv6
// client's /64, which one host may use every address of.
func withClientAddr(ctx context.Context, r *http.Request) context.Context {
	return context.WithValue(ctx, clientAddrKey{}, clientAddress(r))
}

// chargeMiss counts a request the mirror is about to pass on to an upstream
// against its client's and the total limit. Over a limit it fails with 503
// and Retry-After, never 429 or 401: a docker daemon falls back to Docker
// Hub on any error, and those two would also tell it to stop or to log in.
func (m *Mirror) chargeMiss(ctx context.Context) error {
	client, _ := ctx.Value(clientAddrKey{}).(string)
	internal, _ := ctx.Value(internalKey{}).(bool)
	// A peer's miss was charged to its client by the replica it came from.
	internal = internal || fromTrustedPeer(ctx)
	ok, wait := m.misses.allow(client, internal)
	if ok {
		return nil
	}
	m.metrics.missesRefused.Inc()
	seconds := max(1, int(wait.Round(time.Second).Seconds()))
	return &Error{Code: ociserver.CodeUnavailable, Status: http.StatusServiceUnavailable, RetryAfter: strconv.Itoa(seconds),
		Message: fmt.Sprintf("too many requests that the cache cannot answer; retry in %ds", seconds)}
}
