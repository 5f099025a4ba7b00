package mirror

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/internal/bloblookup"
	"github.com/regmirror/regmirror/internal/ociserver"
)

// openBlob serves from the cache what t holds or the client may read
// anyway, or joins or starts the one upstream download of d for t,
// streaming it while it fills the cache; the download reads the bucket
// the replicas share, or asks the replica that owns d, before the
// upstream (blobSource). It reads the cache's index once
// (cache.LookupBlob) whether d is cached or not.
func (m *Mirror) openBlob(ctx context.Context, rem *Remote, t target, d digest.Digest, offset int64) (*ociserver.Blob, error) {
	l, err := m.cache.LookupBlob(ctx, t.cacheKey(), d)
	if err != nil {
		return nil, fmt.Errorf("looking up blob %s: %w", d, err)
	}
	if body, ok, err := m.cachedBlob(ctx, rem, l, d, offset); ok || err != nil {
		return body, err
	}
	if err := m.chargeMiss(ctx); err != nil {
		return nil, err
	}
	if body, ok := m.joinDownload(ctx, rem, t, d, offset); ok {
		return body, nil
	}
	rc, size, joined, err := l.Fetch(ctx, offset, m.blobSource(ctx, rem, t, d))
	var notHeld interface{ NotHeldBy() string }
	if errors.As(err, &notHeld) {
		return m.openHeldBlob(ctx, rem, t, d, offset)
	}
	if err != nil {
		m.lookupResult(ctx, rem, "blob", resultError)
		return nil, fromUpstream(err, rem.Host, ociserver.KindBlob)
	}
	m.lookupResult(ctx, rem, "blob", missOrCoalesced(joined))
	if !joined && m.events != nil {
		rc = &notifyAtEnd{ReadCloser: rc, pos: offset, size: size, done: func() {
			m.notifyPull(ctx, t, "blobs", d, "application/octet-stream", size)
		}}
	}
	return &ociserver.Blob{Body: rc, Offset: offset, Size: size, Source: sourceUpstream}, nil
}

// cachedBlob opens d from the cache when the lookup found it stored and
// the client may read it under the lookup's repository without asking
// upstream (see mayServe); ok is false otherwise.
func (m *Mirror) cachedBlob(ctx context.Context, rem *Remote, l bloblookup.Lookup, d digest.Digest, offset int64) (*ociserver.Blob, bool, error) {
	if !l.Stored() {
		return nil, false, nil
	}
	if cached, hosted := l.Holders(); !l.Linked() && !m.readableHolder(ctx, cached, hosted) {
		return nil, false, nil
	}
	rc, size, err := l.Open(ctx, offset)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading cached blob %s: %w", d, err)
	}
	m.lookupResult(ctx, rem, "blob", resultHit)
	if m.bucket != nil {
		m.bucket.Touch(d) // the bucket's copy is in use too, through this one
	}
	return &ociserver.Blob{Body: rc, Offset: offset, Size: size, Source: sourceCache}, true, nil
}

// joinDownload joins a download of d in flight for another repository of
// t's registry that the client may read, so that two images sharing a
// layer fetch it once. Downloads for other registries are never joined: a
// hostile registry's download, bound to fail, must not take this one's
// readers down with it. ok is false when there is none to join.
func (m *Mirror) joinDownload(ctx context.Context, rem *Remote, t target, d digest.Digest, offset int64) (*ociserver.Blob, bool) {
	for _, repo := range m.cache.Downloading(d) {
		host, _, _ := strings.Cut(repo, "/")
		if repo == t.cacheKey() || host != t.host || !m.mayReadCached(ctx, repo) {
			continue
		}
		rc, size, err := m.cache.JoinDownload(ctx, repo, d, offset)
		if err != nil {
			continue // it failed meanwhile: download for t
		}
		m.lookupResult(ctx, rem, "blob", resultCoalesced)
		return &ociserver.Blob{Body: rc, Offset: offset, Size: size, Source: sourceUpstream}, true
	}
	return nil, false
}

// openHeldBlob serves d, which other repositories than t hold: t's
// upstream must first prove it has d by sending its bytes.
func (m *Mirror) openHeldBlob(ctx context.Context, rem *Remote, t target, d digest.Digest, offset int64) (*ociserver.Blob, error) {
	if err := m.confirmBlob(ctx, rem, t, d); err != nil {
		m.lookupResult(ctx, rem, "blob", resultError)
		return nil, fromUpstream(err, rem.Host, ociserver.KindBlob)
	}
	l, err := m.cache.LookupBlob(ctx, t.cacheKey(), d)
	if err != nil {
		return nil, fmt.Errorf("looking up blob %s: %w", d, err)
	}
	if body, ok, err := m.cachedBlob(ctx, rem, l, d, offset); ok || err != nil {
		return body, err
	}
	return nil, newError(ociserver.CodeUnavailable, "blob %s was removed while it was confirmed; retry", d)
}
