package cluster

import (
	"sync"
	"time"
)

// nonceCache remembers the nonces of verified requests for as long as
// their timestamps would pass, so that none is accepted twice. It holds at
// most max nonces. It is safe for concurrent use.
type nonceCache struct {
	max int

	mu   sync.Mutex
	seen map[string]struct{}
	// queue holds the nonces of seen in the order they expire.
	queue []nonceEntry
}

type nonceEntry struct {
	nonce   string
	expires time.Time
}

// nonceTTL is how long a nonce first seen at t must be kept: its
// timestamp may be up to MaxSkew ahead of t, and a replay passes the
// timestamp check until MaxSkew after that. Counting from the time seen,
// not the timestamp, keeps the queue in order of expiry.
const nonceTTL = 2 * MaxSkew

func newNonceCache(max int) *nonceCache {
	return &nonceCache{max: max, seen: map[string]struct{}{}}
}

// add records nonce at time now. It returns errReplayed for a nonce still
// remembered and errNoncesFull when max nonces are.
func (c *nonceCache) add(nonce string, now time.Time) *refusal {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.forgetExpired(now)
	if _, ok := c.seen[nonce]; ok {
		return errReplayed
	}
	if len(c.seen) >= c.max {
		return errNoncesFull
	}
	c.seen[nonce] = struct{}{}
	c.queue = append(c.queue, nonceEntry{nonce: nonce, expires: now.Add(nonceTTL)})
	return nil
}

func (c *nonceCache) forgetExpired(now time.Time) {
	n := 0
	for n < len(c.queue) && !now.Before(c.queue[n].expires) {
		delete(c.seen, c.queue[n].nonce)
		c.queue[n] = nonceEntry{} // let the string go before append reallocates
		n++
	}
	c.queue = c.queue[n:]
}
