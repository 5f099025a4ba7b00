package s3janitor

import "time"

// Stats tell what one run did, for logs and metrics.
type Stats struct {
	// Ran is false when another replica held the janitor lease, which
	// HeldBy names; the other fields but DroppedTouches are then zero.
	Ran    bool
	HeldBy string
	// Blobs and Bytes are the blobs in the bucket when the run listed
	// them.
	Blobs int
	Bytes int64
	// Evicted and EvictedBytes are the blobs the run removed.
	Evicted      int
	EvictedBytes int64
	// Vanished are blobs chosen for eviction that were gone already
	// (another replica's janitor, or an operator, removed them).
	Vanished int
	// The blobs that the run would have evicted but kept, by reason:
	// accessed or uploaded within the grace period, their fill lease
	// held (or unreadable), kept by Options.Keep, or uploaded again
	// since the listing.
	KeptRecent, KeptLeased, KeptByCaller, KeptRefilled int
	// OverBudget is set when the blobs kept left the bucket above
	// MaxSize.
	OverBudget bool
	// AccessObjects are the replicas' access objects read;
	// BadAccessObjects those ignored as not access records, or too
	// large.
	AccessObjects, BadAccessObjects int
	// DroppedTouches are the accesses this replica dropped since the
	// last run, with MaxPending waiting for a flush.
	DroppedTouches int64
	// Duration is how long the run took.
	Duration time.Duration
}

func (s Stats) logAttrs() []any {
	return []any{"blobs", s.Blobs, "bytes", s.Bytes, "evicted", s.Evicted, "evicted_bytes", s.EvictedBytes,
		"vanished", s.Vanished, "kept_recent", s.KeptRecent, "kept_leased", s.KeptLeased,
		"kept_by_caller", s.KeptByCaller, "kept_refilled", s.KeptRefilled, "over_budget", s.OverBudget,
		"access_objects", s.AccessObjects, "bad_access_objects", s.BadAccessObjects,
		"dropped_touches", s.DroppedTouches, "duration", s.Duration}
}
