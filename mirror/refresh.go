package mirror

import (
	"context"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"
)

// Background refresh of hot tags (Remote.BackgroundRefresh).
const (
	// refreshTTLs is how many tag TTLs after its last pull a tag stays hot,
	// so one pull costs at most this many background HEADs.
	refreshTTLs = 3
	// refreshLeadDivisor places the refresh in the last fifth of the TTL.
	refreshLeadDivisor = 5
	// refreshTick is how often Run looks for tags due; with the default
	// 5m TTL, a tag is refreshed between 60s and 50s before it expires.
	refreshTick = 10 * time.Second
	// refreshConcurrency bounds the revalidations one pass runs at once, so
	// a pass over many hot tags does not burst at the upstream.
	refreshConcurrency = 4
	// maxHotTags bounds the tags remembered for refresh.
	maxHotTags = 10000
)

// hotTag is a tag pulled recently from a Remote with BackgroundRefresh.
type hotTag struct {
	rem      *Remote
	t        target
	tag      string
	pulledAt time.Time
}

// hotTags remembers recently pulled tags. The zero value is ready to use
// and safe for concurrent use.
type hotTags struct {
	mu   sync.Mutex
	tags map[string]hotTag // by tagKey
}

func (h *hotTags) note(key string, tag hotTag) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.tags == nil {
		h.tags = map[string]hotTag{}
	}
	if _, ok := h.tags[key]; !ok && len(h.tags) >= maxHotTags {
		return // a later pass forgets cold tags and makes room
	}
	h.tags[key] = tag
}

// recent returns the tags still hot at now and forgets the others.
func (h *hotTags) recent(now time.Time) []hotTag {
	h.mu.Lock()
	defer h.mu.Unlock()
	hot := make([]hotTag, 0, len(h.tags))
	for key, tag := range h.tags {
		if now.Sub(tag.pulledAt) >= refreshTTLs*tag.rem.tagTTL() {
			delete(h.tags, key)
			continue
		}
		hot = append(hot, tag)
	}
	return hot
}

// notePull remembers a pull of t:tag, if its Remote refreshes tags.
func (m *Mirror) notePull(rem *Remote, t target, tag string) {
	if !rem.BackgroundRefresh || rem.tagTTL() == 0 {
		return
	}
	m.hot.note(tagKey(t, tag), hotTag{rem: rem, t: t, tag: tag, pulledAt: m.now()})
}

// Run revalidates, until ctx ends, the recently pulled tags of Remotes with
// BackgroundRefresh shortly before their tag TTL ends, so that clients of
// hot tags never wait on the upstream. It returns nil when ctx ends. Without
// such Remotes it only waits.
func (m *Mirror) Run(ctx context.Context) error {
	tick := time.NewTicker(refreshTick)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			m.refreshDue(ctx)
		}
	}
}

// dueTag is a hot tag due for refresh and the digest it pointed to.
type dueTag struct {
	hotTag
	known digest.Digest
}

// refreshDue revalidates the hot tags within the last fifth of their TTL,
// a few at a time, and returns how many it revalidated.
func (m *Mirror) refreshDue(ctx context.Context) int {
	due := m.dueTags(ctx)
	var g errgroup.Group
	g.SetLimit(refreshConcurrency)
	for _, tag := range due {
		g.Go(func() error {
			m.refreshTag(ctx, tag)
			return nil
		})
	}
	_ = g.Wait() // refreshTag reports its own failures
	return len(due)
}

func (m *Mirror) dueTags(ctx context.Context) []dueTag {
	now := m.now()
	var due []dueTag
	for _, tag := range m.hot.recent(now) {
		known, fetchedAt, err := m.cache.Tag(ctx, tag.t.cacheKey(), tag.tag)
		if err != nil {
			continue // gone from the cache: the next pull fetches it
		}
		ttl := tag.rem.tagTTL()
		if now.Sub(fetchedAt) >= ttl-ttl/refreshLeadDivisor {
			due = append(due, dueTag{hotTag: tag, known: known})
		}
	}
	return due
}

// refreshTag revalidates one tag, sharing the work with pulls of it.
func (m *Mirror) refreshTag(ctx context.Context, tag dueTag) {
	mf, _, err := m.resolveTag(ctx, tag.rem, tag.t, tag.tag, false)
	result := "unchanged"
	switch {
	case err != nil:
		result = resultError
		m.log.DebugContext(ctx, "background refresh failed", "upstream", tag.rem.Host,
			"repository", tag.t.path, "tag", tag.tag, "error", err)
	case mf.Digest != tag.known:
		result = "changed"
	}
	m.metrics.refreshes.WithLabelValues(tag.rem.Host, result).Inc()
}
