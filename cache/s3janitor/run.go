package s3janitor

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/cache/blobstore"
	"github.com/regmirror/regmirror/cache/s3lease"
)

// leaseName is the lease a replica holds while it runs the janitor.
const leaseName = "janitor"

// releaseTimeout bounds the release of the janitor lease, which is tried
// even when the run's context is done.
const releaseTimeout = 10 * time.Second

// Once flushes this replica's accesses, then, if it gets the janitor
// lease, evicts the least recently used blobs until they fit the budget,
// and releases the lease. When another replica holds the lease, it
// returns Stats with Ran false and no error. An error means the run
// stopped (the bucket failed, or the lease was lost); what it evicted
// until then is in Stats.
func (j *Janitor) Once(ctx context.Context) (Stats, error) {
	j.runMu.Lock()
	defer j.runMu.Unlock()
	start := j.now()
	if err := j.Flush(ctx); err != nil {
		return Stats{}, err
	}
	lease, err := j.leases.Acquire(ctx, leaseName, j.opts.ReplicaID, j.opts.LeaseTTL)
	var held *s3lease.HeldError
	if errors.As(err, &held) {
		return Stats{HeldBy: held.Holder}, nil
	}
	if err != nil {
		return Stats{}, fmt.Errorf("s3janitor: take the janitor lease: %w", err)
	}
	stats := Stats{Ran: true, DroppedTouches: j.takeDropped()}
	err = j.underLease(ctx, lease, func(ctx context.Context) error { return j.evict(ctx, &stats) })
	stats.Duration = j.now().Sub(start)
	return stats, err
}

// takeDropped returns the touches dropped since it was last called.
func (j *Janitor) takeDropped() int64 {
	j.flushMu.Lock()
	defer j.flushMu.Unlock()
	n := j.dropped
	j.dropped = 0
	return n
}

// underLease runs work while renewing lease, cancelling work once the
// lease is lost, and releases the lease after.
func (j *Janitor) underLease(ctx context.Context, lease *s3lease.Lease, work func(context.Context) error) error {
	workCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		j.keepRenewing(workCtx, lease, cancel)
	}()
	err := work(workCtx)
	cancel(nil)
	<-renewed
	if cause := context.Cause(workCtx); errors.Is(cause, s3lease.ErrLost) {
		err = errors.Join(err, cause)
	}
	releaseCtx, cancelRelease := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancelRelease()
	if rerr := lease.Release(releaseCtx); rerr != nil {
		j.log.Warn("s3janitor: cannot release the janitor lease; it expires on its own", "err", rerr)
	}
	return err
}

// keepRenewing renews lease every third of its TTL until ctx is done,
// and cancels ctx with ErrLost once the lease is lost, or about to
// expire with no renewal getting through.
func (j *Janitor) keepRenewing(ctx context.Context, lease *s3lease.Lease, cancel context.CancelCauseFunc) {
	tick := time.NewTicker(j.opts.LeaseTTL / 3)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		err := lease.Renew(ctx)
		switch {
		case err == nil:
		case errors.Is(err, s3lease.ErrLost):
			cancel(err)
			return
		case j.now().Add(j.opts.LeaseTTL / 3).After(lease.Expires()):
			cancel(fmt.Errorf("s3janitor: the janitor lease expires unrenewed (%v): %w", err, s3lease.ErrLost))
			return
		default:
			j.log.Warn("s3janitor: cannot renew the janitor lease; trying again", "err", err)
		}
	}
}

// candidate is a blob in the bucket.
type candidate struct {
	digest digest.Digest
	blobstore.Info
	// lastAccess is the latest of its upload and its accesses.
	lastAccess time.Time
}

// evict removes the least recently used blobs until the blobs fit the
// low watermark, sparing those that must stay.
func (j *Janitor) evict(ctx context.Context, stats *Stats) error {
	now := j.now()
	access, err := j.readAccess(ctx, now, stats)
	if err != nil {
		return err
	}
	blobs, err := j.list(ctx, access, stats)
	if err != nil {
		return err
	}
	usage := stats.Bytes
	defer func() { stats.OverBudget = usage > j.opts.MaxSize }()
	if usage <= j.opts.MaxSize {
		return nil
	}
	target := int64(float64(j.opts.MaxSize) * j.opts.LowWatermark)
	for i, c := range blobs {
		if usage <= target {
			return nil
		}
		if now.Sub(c.lastAccess) < j.opts.Grace {
			// Sorted by access: the rest are as recent.
			stats.KeptRecent += len(blobs) - i
			return nil
		}
		freed, err := j.evictOne(ctx, c, stats)
		if err != nil {
			return err
		}
		usage -= freed
	}
	return nil
}

// list lists the blobs, least recently used first; ties go to the larger
// blob, which frees more.
func (j *Janitor) list(ctx context.Context, access lastAccess, stats *Stats) ([]candidate, error) {
	var blobs []candidate
	err := j.blobs.WalkInfo(ctx, func(d digest.Digest, info blobstore.Info) error {
		c := candidate{digest: d, Info: info, lastAccess: info.ModTime}
		if t := access[d]; t.After(c.lastAccess) {
			c.lastAccess = t
		}
		blobs = append(blobs, c)
		stats.Blobs++
		stats.Bytes += info.Size
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("s3janitor: %w", err)
	}
	slices.SortFunc(blobs, func(a, b candidate) int {
		return cmp.Or(a.lastAccess.Compare(b.lastAccess), cmp.Compare(b.Size, a.Size), cmp.Compare(a.digest, b.digest))
	})
	return blobs, nil
}

// evictOne removes c unless it must stay, and returns the bytes freed.
func (j *Janitor) evictOne(ctx context.Context, c candidate, stats *Stats) (int64, error) {
	if j.opts.Keep != nil && j.opts.Keep(c.digest) {
		stats.KeptByCaller++
		return 0, nil
	}
	if j.fillLeaseHeld(ctx, c.digest) {
		stats.KeptLeased++
		return 0, nil
	}
	// A blob uploaded again since the listing (evicted by someone else
	// and filled anew) is as good as new.
	info, err := j.blobs.Stat(ctx, c.digest)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		stats.Vanished++
		return c.Size, nil
	case err != nil:
		return 0, fmt.Errorf("s3janitor: %w", err)
	case info.ModTime.After(c.ModTime):
		stats.KeptRefilled++
		return 0, nil
	}
	err = j.blobs.Remove(ctx, c.digest)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		stats.Vanished++
		return c.Size, nil
	case err != nil:
		return 0, fmt.Errorf("s3janitor: %w", err)
	}
	stats.Evicted++
	stats.EvictedBytes += c.Size
	j.log.Debug("s3janitor: evicted", "digest", c.digest, "size", c.Size, "last_access", c.lastAccess)
	return c.Size, nil
}

// fillLeaseHeld reports whether a replica holds the lease on filling d.
// A lease it cannot read counts as held: the blob stays, and if the
// bucket is down the next request fails the run.
func (j *Janitor) fillLeaseHeld(ctx context.Context, d digest.Digest) bool {
	_, _, held, err := j.leases.Held(ctx, s3lease.BlobName(d))
	if err != nil {
		j.log.Warn("s3janitor: cannot read a blob's fill lease; keeping the blob", "digest", d, "err", err)
		return true
	}
	return held
}
