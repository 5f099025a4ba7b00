package mirror

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmirror/regmirror/internal/ociserver"
)

// Referrers of proxied repositories.
//
// A proxied repository's referrers listing comes from its upstream: the
// referrers API, or the tag schema's fallback index where the upstream has
// no such API (see Upstream.Referrers). The mirror keeps each listing like
// a tag's manifest: an image index stored as a manifest of the repository,
// and a tag row naming it, so that it is answered from the cache for the
// tag TTL, served stale when the upstream fails, counted against the budget
// and evicted like any manifest. The artifacts it lists are manifests of
// the same repository, fetched and linked through it like any other.

// referrersTag names the tag row of subject's referrers listing. Clients
// cannot send a tag with '@', so it never meets a real tag.
func referrersTag(subject digest.Digest) string { return "referrers@" + subject.String() }

// referrersOf returns subject's referrers in t: from the cache while the
// listing is younger than the tag TTL, else from the upstream (charged as a
// miss, shared by concurrent callers), else the cached listing within its
// stale-if-error window.
func (m *Mirror) referrersOf(ctx context.Context, rem *Remote, t target, subject digest.Digest) ([]ocispec.Descriptor, error) {
	tag := referrersTag(subject)
	known, fetchedAt, err := m.cache.Tag(ctx, t.cacheKey(), tag)
	haveList := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading the referrers of %s in %s: %w", subject, t.cacheKey(), err)
	}
	age := m.now().Sub(fetchedAt)
	if haveList && age < rem.tagTTL() {
		if mf, err := m.cachedManifest(ctx, t, known); err == nil {
			m.lookupResult(ctx, rem, ociserver.KindReferrers.String(), resultHit)
			return referrersIn(mf)
		}
	}
	stale := func(cause error) ([]ocispec.Descriptor, error) {
		mf, err := m.serveStaleAs(ctx, rem, t, ociserver.KindReferrers, tag, known, age, cause)
		if err != nil {
			return nil, err
		}
		return referrersIn(mf)
	}
	if err := m.chargeMiss(ctx); err != nil {
		if haveList {
			return stale(err)
		}
		return nil, err
	}
	nextPage := func() error { return m.chargeMiss(ctx) }
	key := "referrers:" + t.cacheKey() + "@" + subject.String()
	mf, shared, err := m.coalesce(ctx, key, func(fillCtx context.Context) (manifest, error) {
		return m.fetchReferrers(fillCtx, rem, t, subject, nextPage)
	})
	switch {
	case err == nil:
		m.lookupResult(ctx, rem, ociserver.KindReferrers.String(), missOrCoalesced(shared))
		return referrersIn(mf)
	case haveList:
		return stale(err)
	}
	m.lookupResult(ctx, rem, ociserver.KindReferrers.String(), failureResult(err))
	return nil, fromUpstream(err, rem.Host, ociserver.KindReferrers)
}

// fetchReferrers lists subject's referrers upstream and caches the listing
// as an image index of t, with its tag row.
func (m *Mirror) fetchReferrers(ctx context.Context, rem *Remote, t target, subject digest.Digest, nextPage func() error) (manifest, error) {
	descs, err := rem.Upstream.Referrers(ctx, t.path, subject, nextPage)
	if err != nil {
		return manifest{}, err
	}
	data, err := ociserver.ReferrersIndex(descs)
	if err != nil {
		return manifest{}, err
	}
	d := digest.SHA256.FromBytes(data)
	if err := m.cache.PutManifestAs(ctx, t.cacheKey(), d, ocispec.MediaTypeImageIndex, data); err != nil {
		return manifest{}, fmt.Errorf("storing the referrers of %s in %s: %w", subject, t.cacheKey(), err)
	}
	if err := m.cache.PutTag(ctx, t.cacheKey(), referrersTag(subject), d, m.now()); err != nil {
		return manifest{}, fmt.Errorf("recording the referrers of %s in %s: %w", subject, t.cacheKey(), err)
	}
	return manifest{Digest: d, MediaType: ocispec.MediaTypeImageIndex, Data: data}, nil
}

// referrersIn reads the descriptors of a cached referrers listing.
func referrersIn(mf manifest) ([]ocispec.Descriptor, error) {
	var idx ocispec.Index
	if err := json.Unmarshal(mf.Data, &idx); err != nil {
		return nil, fmt.Errorf("cached referrers listing %s: %w", mf.Digest, err)
	}
	return idx.Manifests, nil
}
