package mirror

import (
	"context"
	"io"

	"github.com/opencontainers/go-digest"
)

// Peers are the replicas of a cluster of mirrors, as the mirror uses
// them: each digest and each tag has one owner among them, the only
// replica that asks the upstream for it, so that the upstream sees one
// GET per blob and manifest, and one revalidation per tag and TTL,
// however many replicas clients reach.
type Peers interface {
	// Owner returns the replica that owns key (a digest, or a tag as
	// "<host>/<repository>:<tag>") and whether that is this one. Every
	// replica with the same members answers the same.
	Owner(key string) (peer string, self bool)
	// FetchBlob opens a download of blob d of repository repo on registry
	// host from peer, from offset on, and answers like Upstream.GetBlob:
	// start is where the body begins, size the blob's size or -1. The
	// caller verifies the digest. Any error means the peer did not serve
	// it: refused, failed (5xx) or not answering in time.
	FetchBlob(ctx context.Context, peer, host, repo string, d digest.Digest, offset int64) (body io.ReadCloser, start, size int64, err error)
	// ResolveManifest asks peer which manifest tag or digest ref of
	// repository repo on registry host names, with a HEAD that the peer
	// answers from its cache while the tag is fresh there. Any error
	// means the peer did not answer: refused, failed, not answering in
	// time, or answering from a copy it could not revalidate.
	ResolveManifest(ctx context.Context, peer, host, repo, ref string) (digest.Digest, error)
	// FetchManifest downloads manifest ref of repository repo on
	// registry host from peer. The caller verifies the digest. Any error
	// means the peer did not serve it, as for ResolveManifest.
	FetchManifest(ctx context.Context, peer, host, repo, ref string) (mediaType string, data []byte, err error)
}

// trustedPeerKey marks the context of a request that another replica of
// the cluster sent, signed, for the rights it carries; sentByPeerKey, for
// where its misses are fetched from. Work that outlives the request (a
// manifest fill) drops the first and keeps the second.
type (
	trustedPeerKey struct{}
	sentByPeerKey  struct{}
)

// WithTrustedPeer marks ctx as a request a replica of the cluster sent,
// which the caller has verified (a valid peer signature). The mirror
// serves it as it would a client that logged in to the repository it
// names, since the replica authorized its own client before forwarding,
// and downloads what it misses from the upstream, never from another
// peer, so that no request is forwarded twice.
func WithTrustedPeer(ctx context.Context) context.Context {
	return context.WithValue(context.WithValue(ctx, trustedPeerKey{}, true), sentByPeerKey{}, true)
}

// fromTrustedPeer reports whether ctx is a request marked by
// WithTrustedPeer, with the rights that carries.
func fromTrustedPeer(ctx context.Context) bool {
	v, _ := ctx.Value(trustedPeerKey{}).(bool)
	return v
}

// sentByPeer reports whether ctx is a request marked by WithTrustedPeer,
// or work it started: what it misses is never asked of another replica,
// which would refuse a request forwarded twice.
func sentByPeer(ctx context.Context) bool {
	v, _ := ctx.Value(sentByPeerKey{}).(bool)
	return v
}

// blobFetch is how a cache download of a blob gets its bytes.
type blobFetch = func(ctx context.Context, offset int64) (body io.ReadCloser, start, size int64, err error)

// blobSource returns where the download of d for t fetches its bytes:
// the bucket the replicas share when it has d; else the peer that owns d;
// else, for a request from a peer or a digest this replica owns, or when
// the owner fails, the upstream, under d's fill lease in the bucket.
func (m *Mirror) blobSource(ctx context.Context, rem *Remote, t target, d digest.Digest) blobFetch {
	upstream := m.leased(t, d, func(ctx context.Context, from int64) (io.ReadCloser, int64, int64, error) {
		return rem.Upstream.GetBlob(ctx, t.path, d, from)
	})
	fetch := upstream
	if peer, ok := m.peerOwning(ctx, d.String()); ok {
		fetch = m.peerBlob(t, d, peer, upstream)
	}
	return m.bucketFirst(t, d, fetch)
}

// peerBlob downloads d from peer, and from next when the peer does not
// serve it.
func (m *Mirror) peerBlob(t target, d digest.Digest, peer string, next blobFetch) blobFetch {
	return func(ctx context.Context, from int64) (io.ReadCloser, int64, int64, error) {
		body, start, size, err := m.peers.FetchBlob(ctx, peer, t.host, t.path, d, from)
		if err == nil || ctx.Err() != nil {
			return body, start, size, err
		}
		// A replica that is down or refuses must not block pulls: this
		// download costs the upstream one more GET instead.
		m.peerFailed(peer, "blob", d.String(), err)
		return next(ctx, from)
	}
}

// peerFailed counts and logs a request the owner replica did not answer,
// which goes to the upstream instead.
func (m *Mirror) peerFailed(peer, what, ref string, err error) {
	m.metrics.clusterForwardFailures.Inc()
	m.log.Warn("owner replica did not answer; asking the upstream",
		"peer", peer, "kind", what, "reference", ref, "error", err)
}

// peerOwning returns the replica that owns key when the request should
// be sent there: in a cluster, for a client's request (never a peer's,
// so that no request is forwarded twice), when another replica owns key.
func (m *Mirror) peerOwning(ctx context.Context, key string) (peer string, ok bool) {
	if m.peers == nil || sentByPeer(ctx) {
		return "", false
	}
	peer, self := m.peers.Owner(key)
	return peer, !self
}

// tagOwnerKey names a tag for ownership: "<host>/<repository>:<tag>".
func tagOwnerKey(t target, tag string) string { return t.cacheKey() + ":" + tag }

// fetchedManifest is a manifest's bytes as a source sent them, not yet
// verified.
type fetchedManifest struct {
	mediaType string
	data      []byte
	from      string // who sent it, for errors: "upstream <host>" or "peer <URL>"
}

// manifestFetch is how fetchManifest gets the bytes of a manifest.
type manifestFetch = func(ctx context.Context) (fetchedManifest, error)

// manifestSource returns where manifest d of t is downloaded from: the
// bucket the replicas share, else the replica that owns d, else (or when
// it fails) the upstream.
func (m *Mirror) manifestSource(ctx context.Context, rem *Remote, t target, d digest.Digest) manifestFetch {
	if peer, ok := m.peerOwning(ctx, d.String()); ok {
		return m.bucketManifest(t, d, m.peerManifest(rem, t, d, peer))
	}
	return m.bucketManifest(t, d, upstreamManifest(rem, t, d))
}

// peerManifest downloads manifest d of t from peer, and from the upstream
// when the peer does not serve it. Bytes the peer sends are verified by
// fetchManifest like the upstream's: a peer that lies fails the request.
func (m *Mirror) peerManifest(rem *Remote, t target, d digest.Digest, peer string) manifestFetch {
	return func(ctx context.Context) (fetchedManifest, error) {
		mediaType, data, err := m.peers.FetchManifest(ctx, peer, t.host, t.path, d.String())
		if err == nil || ctx.Err() != nil {
			return fetchedManifest{mediaType: mediaType, data: data, from: "peer " + peer}, err
		}
		m.peerFailed(peer, "manifest", d.String(), err)
		return upstreamManifest(rem, t, d)(ctx)
	}
}

func upstreamManifest(rem *Remote, t target, d digest.Digest) manifestFetch {
	return func(ctx context.Context) (fetchedManifest, error) {
		mediaType, data, err := rem.Upstream.GetManifest(ctx, t.path, d.String())
		return fetchedManifest{mediaType: mediaType, data: data, from: "upstream " + rem.Host}, err
	}
}

// tagDigest asks where tag points now: the replica that owns the tag,
// which answers from its cache while the tag is fresh there, so that the
// upstream sees one revalidation per tag and TTL across replicas; else,
// or when that replica fails, the upstream. It returns the digest and
// where to download that manifest if it is not cached: from the replica
// that answered, which holds it, so that the upstream sends it once.
func (m *Mirror) tagDigest(ctx context.Context, rem *Remote, t target, tag string) (digest.Digest, manifestFetch, error) {
	if peer, ok := m.peerOwning(ctx, tagOwnerKey(t, tag)); ok {
		d, err := m.peers.ResolveManifest(ctx, peer, t.host, t.path, tag)
		if err == nil {
			return d, m.bucketManifest(t, d, m.peerManifest(rem, t, d, peer)), nil
		}
		if ctx.Err() != nil {
			return "", nil, err
		}
		m.peerFailed(peer, "tag", tag, err)
	}
	desc, err := rem.Upstream.HeadManifest(ctx, t.path, tag)
	if err != nil {
		return "", nil, err
	}
	return desc.Digest, m.manifestSource(ctx, rem, t, desc.Digest), nil
}
