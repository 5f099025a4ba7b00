package upstream

import (
	"container/list"
	"net/http"
	"sync"
)

// maxCachedTransports bounds the authenticated transports a client keeps.
// Clients choose repository names, so one transport per name ever asked
// for would grow without end; a pull uses one repository at a time, and
// one that fell out pays one token request more.
const maxCachedTransports = 1024

// transportCache keeps the authenticated transports of the repositories
// used last, at most limit of them; the least recently used goes first.
// It is safe for concurrent use.
type transportCache struct {
	limit int

	mu sync.Mutex
	// order holds *cachedTransport, the most recently used first; byRepo
	// indexes it.
	order  *list.List
	byRepo map[string]*list.Element
}

type cachedTransport struct {
	repo string
	rt   http.RoundTripper
}

func newTransportCache(limit int) *transportCache {
	return &transportCache{limit: limit, order: list.New(), byRepo: map[string]*list.Element{}}
}

// get returns repo's transport, nil if none is kept.
func (c *transportCache) get(repo string) http.RoundTripper {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byRepo[repo]
	if !ok {
		return nil
	}
	c.order.MoveToFront(e)
	return e.Value.(*cachedTransport).rt
}

// put keeps repo's transport, dropping the least recently used beyond
// the limit.
func (c *transportCache) put(repo string, rt http.RoundTripper) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byRepo[repo]; ok {
		e.Value.(*cachedTransport).rt = rt
		c.order.MoveToFront(e)
		return
	}
	c.byRepo[repo] = c.order.PushFront(&cachedTransport{repo: repo, rt: rt})
	for c.order.Len() > c.limit {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.byRepo, oldest.Value.(*cachedTransport).repo)
	}
}

// len is how many transports are kept.
func (c *transportCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
