package mirror

import (
	"context"
	"sync"
	"time"

	"github.com/regmirror/regmirror/internal/fill"
	"github.com/regmirror/regmirror/internal/ociserver"
)

// Visibility tells what an upstream serves without credentials. The mirror
// pulls with its own credentials, which may read repositories that are not
// public; it asks Visibility before serving such a repository to a client
// that brought no credentials of its own, so that it never becomes the
// anonymous way into somebody's private images (a confused deputy).
type Visibility interface {
	// Public reports whether the upstream lets anyone pull repo without
	// credentials: a refusal is (false, nil). It fails when the upstream
	// gave no answer (unreachable, failing) or answered 404, with an error
	// carrying its status as Upstream's errors do. It is true at no cost
	// when the mirror has no credentials for the upstream.
	Public(ctx context.Context, repo string) (bool, error)
}

// visibilityTTL is how long the answer about a repository is trusted: a
// repository made private upstream stops being served to anonymous clients
// within this time.
const visibilityTTL = time.Hour

// maxVisibility bounds the repositories whose visibility is remembered;
// past it, answers older than visibilityTTL are forgotten first.
const maxVisibility = 10000

// visibilityCache remembers the answers of Visibility, per upstream
// repository, so that a pull costs no extra upstream request once its
// repository has been asked about. Safe for concurrent use.
type visibilityCache struct {
	mu      sync.Mutex
	answers map[string]visibilityAnswer // by cache key, "<host>/<path>"
	asking  fill.Group[string, bool]
}

type visibilityAnswer struct {
	public bool
	at     time.Time
}

func (c *visibilityCache) get(key string) (visibilityAnswer, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.answers[key]
	return a, ok
}

func (c *visibilityCache) put(key string, a visibilityAnswer, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.answers == nil {
		c.answers = make(map[string]visibilityAnswer)
	}
	if len(c.answers) >= maxVisibility {
		for k, old := range c.answers {
			if now.Sub(old.at) >= visibilityTTL {
				delete(c.answers, k)
			}
		}
	}
	if len(c.answers) < maxVisibility {
		c.answers[key] = a
	}
}

// exposes reports whether the Remote's Expose patterns name repo.
func (r *Remote) exposes(repo string) bool {
	return matchesAny(r.Expose, repo)
}

// checkExposed refuses a repository that only the mirror's credentials can
// read to a client that did not authenticate to the mirror, unless the
// operator exposed it. The upstream is asked once per repository and its
// answer trusted for visibilityTTL; the first request after that, a cache
// hit by digest included, renews it, so a repository made private upstream
// stops being passed on within the hour. When the upstream cannot answer,
// its last answer stands, and without one the pull fails as the upstream
// failed (a 404 included, which is not remembered): the mirror fails closed.
func (m *Mirror) checkExposed(ctx context.Context, rem *Remote, t target, k kind) error {
	if rem.Visibility == nil || rem.exposes(t.path) || clientAuthenticated(ctx) {
		return nil
	}
	public, err := m.visibility(ctx, rem, t)
	switch {
	case err != nil:
		return fromUpstream(err, rem.Host, k)
	case !public:
		m.metrics.notExposed.WithLabelValues(rem.Host).Inc()
		return &Error{Code: ociserver.CodeDenied,
			Message: t.host + "/" + truncate(t.path) + " is not public upstream, and the mirror does not pass on what only " +
				"its own credentials can read: the operator can list it in the upstream's expose setting"}
	}
	return nil
}

// visibility is the remembered, or else freshly asked, answer about t.
func (m *Mirror) visibility(ctx context.Context, rem *Remote, t target) (bool, error) {
	key := t.cacheKey()
	known, ok := m.exposure.get(key)
	if ok && m.now().Sub(known.at) < visibilityTTL {
		return known.public, nil
	}
	if err := m.chargeMiss(ctx); err != nil {
		if ok {
			return known.public, nil // the last word, as when the upstream fails
		}
		return false, err
	}
	public, _, err := m.exposure.asking.Do(ctx, key, m.fillTimeout, func(ctx context.Context, _ *fill.Fill[bool]) (bool, error) {
		public, err := rem.Visibility.Public(ctx, t.path)
		if err != nil {
			return false, err
		}
		m.exposure.put(key, visibilityAnswer{public: public, at: m.now()}, m.now())
		return public, nil
	})
	if err != nil && ok && ctx.Err() == nil {
		return known.public, nil // stale, but the upstream's last word
	}
	return public, err
}
