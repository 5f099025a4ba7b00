package mirror

import (
	"context"

	"github.com/regmirror/regmirror/internal/ociserver"
)

// proxiedTags lists a proxied repository's tags upstream. When the
// upstream cannot answer, it lists the tags the cache holds, with a
// warning, rather than fail a client that only browses.
func (m *Mirror) proxiedTags(ctx context.Context, repo ociserver.Repo) ([]string, error) {
	rem, t, err := m.remoteFor(ctx, repo)
	if err != nil {
		return nil, err
	}
	if err := m.chargeMiss(ctx); err != nil {
		return nil, err
	}
	tags, err := rem.Upstream.ListTags(ctx, t.path, func() error { return m.chargeMiss(ctx) })
	if err == nil {
		return tags, nil
	}
	cached, ok := m.cachedTagsFallback(ctx, t, err)
	if !ok {
		return nil, fromUpstream(err, rem.Host, ociserver.KindTags)
	}
	m.log.WarnContext(ctx, "listing cached tags: the upstream is unreachable", "repository", t.cacheKey(), "error", err)
	ociserver.Warn(ctx, 110, "upstream unreachable; listing the cached tags")
	return cached, nil
}
