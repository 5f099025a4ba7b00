package mirror

import (
	"context"
	"io"

	"github.com/opencontainers/go-digest"
)

// Peers are the replicas of a cluster of mirrors, as the mirror uses
// them: each digest has one owner among them, the only replica that
// downloads it from the upstream, so that the upstream sees one GET per
// blob however many replicas clients reach.
type Peers interface {
	// Owner returns the replica that owns key (a digest) and whether
	// that is this one. Every replica with the same members answers the
	// same.
	Owner(key string) (peer string, self bool)
	// FetchBlob opens a download of blob d of repository repo on registry
	// host from peer, from offset on, and answers like Upstream.GetBlob:
	// start is where the body begins, size the blob's size or -1. The
	// caller verifies the digest. Any error means the peer did not serve
	// it: refused, failed (5xx) or not answering in time.
	FetchBlob(ctx context.Context, peer, host, repo string, d digest.Digest, offset int64) (body io.ReadCloser, start, size int64, err error)
}

// trustedPeerKey marks the context of a request that another replica of
// the cluster sent, signed.
type trustedPeerKey struct{}

// WithTrustedPeer marks ctx as a request a replica of the cluster sent,
// which the caller has verified (a valid peer signature). The mirror
// serves it as it would a client that logged in, since the replica
// authorized its own client before forwarding, and downloads what it
// misses from the upstream, never from another peer, so that no request
// is forwarded twice.
func WithTrustedPeer(ctx context.Context) context.Context {
	return context.WithValue(ctx, trustedPeerKey{}, true)
}

// fromTrustedPeer reports whether ctx is a request marked by WithTrustedPeer.
func fromTrustedPeer(ctx context.Context) bool {
	v, _ := ctx.Value(trustedPeerKey{}).(bool)
	return v
}

// blobFetch is how a cache download of a blob gets its bytes.
type blobFetch = func(ctx context.Context, offset int64) (body io.ReadCloser, start, size int64, err error)

// blobSource returns where the download of d for t fetches its bytes:
// the upstream, or the peer that owns d. A request from a peer, or for a
// digest this replica owns, goes to the upstream.
func (m *Mirror) blobSource(ctx context.Context, rem *Remote, t target, d digest.Digest) blobFetch {
	upstream := func(ctx context.Context, from int64) (io.ReadCloser, int64, int64, error) {
		return rem.Upstream.GetBlob(ctx, t.path, d, from)
	}
	if m.peers == nil || fromTrustedPeer(ctx) {
		return upstream
	}
	peer, self := m.peers.Owner(d.String())
	if self {
		return upstream
	}
	return func(ctx context.Context, from int64) (io.ReadCloser, int64, int64, error) {
		body, start, size, err := m.peers.FetchBlob(ctx, peer, t.host, t.path, d, from)
		if err == nil || ctx.Err() != nil {
			return body, start, size, err
		}
		// A replica that is down or refuses must not block pulls: this
		// download costs the upstream one more GET instead.
		m.metrics.clusterForwardFailures.Inc()
		m.log.Warn("owner replica did not serve the blob; fetching it from the upstream",
			"peer", peer, "digest", d, "error", err)
		return upstream(ctx, from)
	}
}
