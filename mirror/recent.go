package mirror

import (
	"net/http"
	"path"
	"sync"
	"time"

	"github.com/regmirror/regmirror/internal/ociserver"
)

// RecentPullsKept is how many of the latest pulls RecentPulls returns at most.
const RecentPullsKept = 50

// Pull is one manifest or blob read the mirror answered.
type Pull struct {
	Time   time.Time
	Method string
	// Kind is "manifest" or "blob".
	Kind string
	// Upstream and Repository say where the request was routed, e.g.
	// "docker.io" and "library/node"; both are empty when routing failed.
	Upstream   string
	Repository string
	// Reference is the tag or digest asked for.
	Reference string
	// Cache is the lookup's result (hit, miss, coalesced, stale, error, ...),
	// empty when the request failed before the cache was consulted.
	Cache    string
	Status   int
	Bytes    int64
	Duration time.Duration
}

// RecentPulls returns the latest manifest and blob reads, newest first, at
// most RecentPullsKept of them. Pushes, pings and tag lists are left out.
func (m *Mirror) RecentPulls() []Pull {
	return m.recent.snapshot()
}

// pullLog is a fixed ring of the latest pulls. Its zero value is empty and
// ready; it is safe for concurrent use.
type pullLog struct {
	mu    sync.Mutex
	ring  [RecentPullsKept]Pull
	next  int // where the next pull goes
	count int // how many slots are filled
}

func (l *pullLog) record(r *http.Request, n *requestNotes, status int, bytes int64, took time.Duration, now time.Time) {
	if n.kind != ociserver.KindManifest && n.kind != ociserver.KindBlob || !isReadMethod(r.Method) {
		return
	}
	p := Pull{
		Time:       now,
		Method:     r.Method,
		Kind:       n.kind.String(),
		Upstream:   n.upstream,
		Repository: clip(n.repository, maxLoggedPath),
		Reference:  clip(path.Base(r.URL.Path), maxLoggedPath),
		Cache:      n.result,
		Status:     status,
		Bytes:      bytes,
		Duration:   took,
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ring[l.next] = p
	l.next = (l.next + 1) % len(l.ring)
	l.count = min(l.count+1, len(l.ring))
}

func (l *pullLog) snapshot() []Pull {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Pull, 0, l.count)
	for i := 1; i <= l.count; i++ {
		out = append(out, l.ring[(l.next-i+len(l.ring))%len(l.ring)])
	}
	return out
}
