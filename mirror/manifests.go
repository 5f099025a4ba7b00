package mirror

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/internal/fill"
	"github.com/regmirror/regmirror/internal/ociserver"
)

// manifestByDigest serves an immutable manifest: once cached, the upstream is
// never asked again.
func (m *Mirror) manifestByDigest(ctx context.Context, rem *Remote, t target, d digest.Digest) (manifest, error) {
	if mf, err := m.cachedManifest(ctx, t, d); err == nil {
		m.lookupResult(ctx, rem, "manifest", resultHit)
		return mf, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return manifest{}, err
	}
	if err := m.chargeMiss(ctx); err != nil {
		return manifest{}, err
	}
	key := manifestKey(t, d)
	mf, shared, err := m.coalesce(ctx, key, func(ctx context.Context) (manifest, error) {
		return m.askUnlessNotFound(rem, key, func() (manifest, error) {
			return m.fetchManifest(ctx, rem, t, d, m.manifestSource(ctx, rem, t, d))
		})
	})
	if err != nil {
		m.lookupResult(ctx, rem, "manifest", failureResult(err))
		return manifest{}, fromUpstream(err, rem.Host, ociserver.KindManifest)
	}
	m.lookupResult(ctx, rem, "manifest", missOrCoalesced(shared))
	return mf, nil
}

// manifestByTag answers from the cache while the tag is fresh, otherwise
// revalidates it upstream with a HEAD (which Docker Hub does not count
// against its pull limit) and downloads a manifest only when its digest is new.
// When the upstream fails, a tag within its stale-if-error window is served stale.
func (m *Mirror) manifestByTag(ctx context.Context, rem *Remote, t target, tag string) (manifest, error) {
	known, fetchedAt, err := m.cache.Tag(ctx, t.cacheKey(), tag)
	haveTag := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return manifest{}, fmt.Errorf("reading tag %s:%s: %w", t.cacheKey(), tag, err)
	}
	m.notePull(rem, t, tag)
	age := m.now().Sub(fetchedAt)
	if haveTag && age < rem.tagTTL() {
		if mf, err := m.cachedManifest(ctx, t, known); err == nil {
			m.lookupResult(ctx, rem, "tag", resultHit)
			return mf, nil
		}
	}
	if err := m.chargeMiss(ctx); err != nil {
		if haveTag {
			return m.serveStale(ctx, rem, t, tag, known, age, err)
		}
		return manifest{}, err
	}
	mf, shared, err := m.resolveTag(ctx, rem, t, tag, true)
	if err == nil {
		m.lookupResult(ctx, rem, "tag", missOrCoalesced(shared))
		return mf, nil
	}
	if haveTag {
		return m.serveStale(ctx, rem, t, tag, known, age, err)
	}
	m.lookupResult(ctx, rem, "tag", failureResult(err))
	return manifest{}, fromUpstream(err, rem.Host, ociserver.KindManifest)
}

// resolveTag revalidates a tag upstream, unless the upstream said 404 for
// it moments ago or, with unlessFresh, it was revalidated within its TTL;
// concurrent callers (pulls and background refresh) share one
// revalidation.
func (m *Mirror) resolveTag(ctx context.Context, rem *Remote, t target, tag string, unlessFresh bool) (mf manifest, joined bool, err error) {
	key := tagKey(t, tag)
	return m.coalesce(ctx, key, func(ctx context.Context) (manifest, error) {
		// A revalidation that ended between a pull's look at the tag and
		// this fill has done the work: no second HEAD.
		if mf, ok := m.freshTag(ctx, rem, t, tag); ok && unlessFresh {
			return mf, nil
		}
		return m.askUnlessNotFound(rem, key, func() (manifest, error) {
			return m.revalidateTag(ctx, rem, t, tag)
		})
	})
}

// freshTag returns the cached manifest of a tag confirmed within its TTL.
func (m *Mirror) freshTag(ctx context.Context, rem *Remote, t target, tag string) (manifest, bool) {
	known, fetchedAt, err := m.cache.Tag(ctx, t.cacheKey(), tag)
	if err != nil || m.now().Sub(fetchedAt) >= rem.tagTTL() {
		return manifest{}, false
	}
	mf, err := m.cachedManifest(ctx, t, known)
	return mf, err == nil
}

// serveStale answers with the cached manifest of a tag whose revalidation
// failed with cause, if the tag was confirmed recently enough for that
// failure, with a Warning header, a log line and a metric. Otherwise it
// refuses, saying why.
func (m *Mirror) serveStale(ctx context.Context, rem *Remote, t target, tag string,
	known digest.Digest, age time.Duration, cause error) (manifest, error) {
	return m.serveStaleAs(ctx, rem, t, ociserver.KindManifest, tag, known, age, cause)
}

// serveStaleAs is serveStale for a cached answer of kind k (a tag's
// manifest, a referrers listing) kept under the tag row tag.
func (m *Mirror) serveStaleAs(ctx context.Context, rem *Remote, t target, k kind, tag string,
	known digest.Digest, age time.Duration, cause error) (manifest, error) {
	lookupKind := "tag"
	if k != ociserver.KindManifest {
		lookupKind = k.String()
	}
	window := rem.staleWindow(cause)
	if age < window {
		if stale, err := m.cachedManifest(ctx, t, known); err == nil {
			m.lookupResult(ctx, rem, lookupKind, resultStale)
			m.metrics.staleServes.WithLabelValues(rem.Host).Inc()
			m.log.WarnContext(ctx, "serving stale "+lookupKind, "upstream", rem.Host, "repository", t.path,
				"tag", tag, "age", age.Round(time.Second), "error", cause)
			ociserver.Warn(ctx, 110, "Response is Stale")
			return stale, nil
		}
	}
	m.lookupResult(ctx, rem, lookupKind, failureResult(cause))
	err := fromUpstream(cause, rem.Host, k)
	if window > 0 && age >= window {
		err = tooStale(err, age, rem)
	}
	return manifest{}, err
}

// tooStale adds to an upstream failure why the cached copy was not served.
func tooStale(err error, age time.Duration, rem *Remote) error {
	var e *Error
	if !errors.As(err, &e) {
		return err
	}
	refused := *e
	refused.Message += fmt.Sprintf("; the cached tag was last confirmed %s ago, longer than tag_ttl (%s) + stale_if_error (%s) allow",
		age.Round(time.Second), rem.tagTTL(), rem.staleIfError())
	return &refused
}

// revalidateTag asks the upstream (in a cluster, the replica that owns the
// tag: tagDigest) where a tag points now and makes sure that manifest is
// cached before the tag is moved, so a tag never names a manifest the
// mirror cannot serve.
func (m *Mirror) revalidateTag(ctx context.Context, rem *Remote, t target, tag string) (manifest, error) {
	d, source, err := m.tagDigest(ctx, rem, t, tag)
	if err != nil {
		return manifest{}, err
	}
	mf, err := m.cachedManifest(ctx, t, d)
	if errors.Is(err, fs.ErrNotExist) {
		mf, err = m.fetchManifest(ctx, rem, t, d, source)
	}
	if err != nil {
		return manifest{}, err
	}
	if err := m.cache.PutTag(ctx, t.cacheKey(), tag, mf.Digest, m.now()); err != nil {
		return manifest{}, fmt.Errorf("recording tag %s:%s: %w", t.cacheKey(), tag, err)
	}
	return mf, nil
}

// tagKey and manifestKey name an upstream reference, for coalescing and
// for remembering 404s.
func tagKey(t target, tag string) string { return "tag:" + t.cacheKey() + ":" + tag }
func manifestKey(t target, d digest.Digest) string {
	return "manifest:" + t.cacheKey() + "@" + d.String()
}

// fetchManifest downloads a manifest by digest from source (the upstream
// or the replica that owns it: manifestSource), verifies it and stores it.
func (m *Mirror) fetchManifest(ctx context.Context, rem *Remote, t target, d digest.Digest, source manifestFetch) (manifest, error) {
	if err := d.Validate(); err != nil {
		return manifest{}, fmt.Errorf("upstream named an invalid digest: %w", err)
	}
	got, err := source(ctx)
	if err != nil {
		return manifest{}, err
	}
	mediaType, data := got.mediaType, got.data
	if mediaType, err = checkUpstreamManifest(mediaType, data); err != nil {
		m.metrics.invalidManifests.WithLabelValues(rem.Host).Inc()
		return manifest{}, invalidUpstreamManifest(got.from, d, err)
	}
	if sum := d.Algorithm().FromBytes(data); sum != d { // d passed parseDigest or came from HeadManifest
		return manifest{}, &Error{Code: ociserver.CodeUnavailable, Status: http.StatusBadGateway,
			Message: fmt.Sprintf("%s sent a manifest whose digest is %s, not %s", got.from, sum, d)}
	}
	if err := m.cache.PutManifestAs(ctx, t.cacheKey(), d, mediaType, data); err != nil {
		return manifest{}, fmt.Errorf("storing manifest %s: %w", d, err)
	}
	m.shareManifest(ctx, t, d, got, mediaType)
	m.notifyPull(ctx, t, "manifests", d, mediaType, int64(len(data)))
	return manifest{Digest: d, MediaType: mediaType, Data: data}, nil
}

// cachedManifest returns manifest d from the cache when the client may read
// it under t without asking t's upstream (see mayServe), and otherwise an
// error wrapping fs.ErrNotExist: fetching it through t links it to t.
func (m *Mirror) cachedManifest(ctx context.Context, t target, d digest.Digest) (manifest, error) {
	may, err := m.mayServe(ctx, t, d)
	if err != nil {
		return manifest{}, err
	}
	if !may {
		return manifest{}, fmt.Errorf("manifest %s is not held by %s: %w", d, t.cacheKey(), fs.ErrNotExist)
	}
	mediaType, data, err := m.cache.Manifest(ctx, d)
	if err != nil {
		return manifest{}, err
	}
	return manifest{Digest: d, MediaType: mediaType, Data: data}, nil
}

// coalesce runs run once for all concurrent callers with the same key
// and reports whether this caller waited on another's run (see
// internal/fill: the run is detached from the caller that started it, and
// from its rights).
func (m *Mirror) coalesce(ctx context.Context, key string, run func(context.Context) (manifest, error)) (mf manifest, joined bool, err error) {
	return m.manifestFills.Do(ctx, key, m.fillTimeout, func(ctx context.Context, _ *fill.Fill[manifest]) (manifest, error) {
		return run(ctx)
	})
}

func missOrCoalesced(shared bool) string {
	if shared {
		return resultCoalesced
	}
	return resultMiss
}

func (m *Mirror) lookupResult(ctx context.Context, rem *Remote, kind, result string) {
	noteResult(ctx, result)
	m.metrics.lookup(rem.Host, kind, result)
}
