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
	stats, err := j.once(ctx)
	j.metrics.record(stats, err)
	return stats, err
}

func (j *Janitor) once(ctx context.Context) (Stats, error) {
	start := j.now()
	if err := j.Flush(ctx); err != nil {
		return Stats{}, err
	}
	stats := Stats{DroppedTouches: j.takeDropped()}
	lease, err := j.leases.Acquire(ctx, leaseName, j.opts.ReplicaID, j.opts.LeaseTTL)
	var held *s3lease.HeldError
	if errors.As(err, &held) {
		stats.HeldBy = held.Holder
		return stats, nil
	}
	if err != nil {
		return stats, fmt.Errorf("s3janitor: take the janitor lease: %w", err)
	}
	stats.Ran = true
	err = j.evict(ctx, &heldLease{Lease: lease, renewed: j.now()}, &stats)
	j.release(ctx, lease)
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

// release lets the janitor lease go, also when ctx is done; a failure
// only leaves the lease to expire.
func (j *Janitor) release(ctx context.Context, lease *s3lease.Lease) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	err := lease.Release(ctx)
	switch {
	case errors.Is(err, s3lease.ErrLost):
		j.log.Debug("s3janitor: the janitor lease was lost before its release", "err", err)
	case err != nil:
		j.log.Warn("s3janitor: cannot release the janitor lease; it expires on its own", "err", err)
	}
}

// heldLease is the janitor lease of a run, and when it was last renewed.
type heldLease struct {
	*s3lease.Lease
	renewed time.Time
}

// keepLease renews the janitor lease once a third of its TTL has passed
// since it was last renewed. A run calls it between its steps (each
// access object, each blob listed, each blob it removes), which
// keeps the renewals on the run's clock and a lost lease from letting
// another removal through. The error wraps s3lease.ErrLost once the
// lease is lost, or about to expire with no renewal getting through.
func (j *Janitor) keepLease(ctx context.Context, lease *heldLease) error {
	now := j.now()
	if now.Sub(lease.renewed) < j.opts.LeaseTTL/3 {
		return nil
	}
	err := lease.Renew(ctx)
	switch {
	case err == nil:
		lease.renewed = now
		return nil
	case errors.Is(err, s3lease.ErrLost):
		return fmt.Errorf("s3janitor: %w", err)
	case !now.Add(j.opts.LeaseTTL / 3).Before(lease.Expires()):
		return fmt.Errorf("s3janitor: the janitor lease expires unrenewed (%v): %w", err, s3lease.ErrLost)
	}
	j.log.Warn("s3janitor: cannot renew the janitor lease; trying again", "err", err)
	return nil
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
func (j *Janitor) evict(ctx context.Context, lease *heldLease, stats *Stats) error {
	now := j.now()
	access, err := j.readAccess(ctx, lease, now, stats)
	if err != nil {
		return err
	}
	blobs, err := j.list(ctx, lease, access, stats)
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
		if err := j.keepLease(ctx, lease); err != nil {
			return err
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
func (j *Janitor) list(ctx context.Context, lease *heldLease, access lastAccess, stats *Stats) ([]candidate, error) {
	var blobs []candidate
	err := j.blobs.WalkInfo(ctx, func(d digest.Digest, info blobstore.Info) error {
		if err := j.keepLease(ctx, lease); err != nil {
			return err
		}
		c := candidate{digest: d, Info: info, lastAccess: info.ModTime}
		if t := access[d]; t.After(c.lastAccess) {
			c.lastAccess = t
		}
		blobs = append(blobs, c)
		stats.Blobs++
		stats.Bytes += info.Size
		return nil
	})
	if errors.Is(err, s3lease.ErrLost) {
		return nil, err
	}
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

// fillLeaseHeld reports whether a replica holds a lease on filling d, for
// any repository (s3lease.FillName). A lease it cannot read counts as
// held: the blob stays, and if the bucket is down the next request fails
// the run.
func (j *Janitor) fillLeaseHeld(ctx context.Context, d digest.Digest) bool {
	held, err := j.leases.HeldUnder(ctx, s3lease.BlobName(d))
	if err != nil {
		j.log.Warn("s3janitor: cannot read a blob's fill lease; keeping the blob", "digest", d, "err", err)
		return true
	}
	return held
}
