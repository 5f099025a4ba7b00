package bucket

import (
	"context"
	"errors"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/cache/s3lease"
)

// releaseTimeout bounds the release of a lease once its fill has ended:
// a lease not released expires anyway.
const releaseTimeout = 10 * time.Second

// ClaimFill takes the lease of fetching blob d from the upstream of
// repository repo (a cache key) for as long as ctx lasts: it is renewed
// until ctx ends, then released. It returns "" when this replica took
// it, or the holder's name (a replica's URL) when another fill of d for
// repo has it, this replica's own included. Fills of d for other
// repositories have leases of their own (s3lease.FillName): each must
// ask its own upstream, and none waits on another registry's download.
// Any error means the bucket could not tell, and nothing is held.
func (b *Bucket) ClaimFill(ctx context.Context, repo string, d digest.Digest) (holder string, err error) {
	lease, err := b.acquire(ctx, s3lease.FillName(repo, d))
	var held *s3lease.HeldError
	switch {
	case errors.As(err, &held):
		b.metrics.claims.WithLabelValues("held").Inc()
		return held.Holder, nil
	case err != nil:
		b.metrics.claims.WithLabelValues("error").Inc()
		return "", err
	}
	b.metrics.claims.WithLabelValues("taken").Inc()
	b.noteClaim(ctx, d)
	go b.hold(ctx, lease)
	return "", nil
}

// acquire takes the lease name, within lookupTimeout.
func (b *Bucket) acquire(ctx context.Context, name string) (*s3lease.Lease, error) {
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	return b.leases.Acquire(ctx, name, b.holder, b.ttl)
}

// hold renews lease every third of its TTL until ctx ends, then releases
// it. A lease lost meanwhile (its renewals failed past its expiry, and
// another replica took it over) is logged: the blob may then be fetched
// twice, never wrongly, since every download is verified.
func (b *Bucket) hold(ctx context.Context, lease *s3lease.Lease) {
	tick := time.NewTicker(b.ttl / 3)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			b.release(ctx, lease)
			return
		case <-tick.C:
			err := b.renew(ctx, lease)
			if errors.Is(err, s3lease.ErrLost) {
				b.log.Warn("lost the lease of a blob download; another replica may fetch it too",
					"lease", lease.Name(), "error", err)
				return
			}
			if err != nil && ctx.Err() == nil {
				b.log.Warn("could not renew the lease of a blob download", "lease", lease.Name(), "error", err)
			}
		}
	}
}

func (b *Bucket) release(ctx context.Context, lease *s3lease.Lease) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	if err := lease.Release(ctx); err != nil && !errors.Is(err, s3lease.ErrLost) {
		b.log.Warn("could not release the lease of a blob download; it expires by itself",
			"lease", lease.Name(), "expires", lease.Expires(), "error", err)
	}
}

// renew renews lease within a third of its TTL: one renewal that hangs
// must not outlast the lease, so that the next one is still in time.
func (b *Bucket) renew(ctx context.Context, lease *s3lease.Lease) error {
	ctx, cancel := context.WithTimeout(ctx, b.ttl/3)
	defer cancel()
	return lease.Renew(ctx)
}
