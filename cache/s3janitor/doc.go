// Package s3janitor keeps the blobs that replicas share in an
// S3-compatible bucket within a budget (storage.s3.max_size), evicting the
// least recently used.
//
// Access times come from every replica, in batches. Each replica records
// the blobs it serves or fills with Touch, in memory (bounded by
// MaxPending), and Run writes them every FlushInterval into the replica's
// own object, <prefix>access/<replica>.json, merged with what it wrote
// before (bounded by MaxEntries, the most recent kept). The replica's ID
// is made safe for a key, with a hash of it when anything was changed. No
// two replicas write one object, so the writes need no coordination. A
// blob's last access is the latest of its upload (the object's
// LastModified) and every replica's access of it.
//
// One replica at a time runs the janitor: a run takes the lease "janitor"
// (cache/s3lease), renews it between its steps once a third of its TTL has
// passed, stops before its next removal when it loses it, and releases it
// after. A single request that outlasts the TTL (a listing page, a delete)
// can still overlap another replica's run; both then evict by the same
// order, and a blob found gone is counted, not an error. Every replica
// tries every Interval; all but one find the lease held and do nothing.
// Once the blobs exceed MaxSize, a run lists them (one listing, no request
// per blob) and removes them least recently used first until they fit
// LowWatermark×MaxSize (90% by default), so that it frees room for a
// while. It never removes a blob accessed or uploaded within Grace (reads
// in flight, accesses not yet flushed), one with a fill lease
// (s3lease.BlobName, or a FillName under it) held or unreadable, one that Options.Keep
// keeps (hosted or pinned content), or one uploaded again since the
// listing. When those leave it over budget, Stats.OverBudget says so.
//
// Failures stop a run, never the janitor: a bucket that is down fails Once
// and Flush with an error, Run logs it and tries again at its next tick,
// and unflushed accesses wait in memory. A run that cannot read every
// access object evicts nothing. An access object that is not a record, or
// larger than MaxAccessObjectSize, is ignored with a warning, as are
// accesses of invalid digests; since a blob's last access is the latest of
// all its sources, a bad object can only keep blobs, never have one
// evicted earlier than its other accesses allow. An access further in the
// future than MaxClockSkew is ignored, so that a bogus or badly skewed
// record cannot keep a blob forever; one less far counts as now.
//
// Limits. Replicas' clocks must agree to well within Grace: a clock behind
// by d makes its accesses look d older, and the janitor's own clock is
// compared with the server's upload times. A warning names a replica whose
// record's time differs from the server's by more than MaxClockSkew. A
// read that outlasts Grace after its Touch is not covered: the mirror
// should Touch again during long reads. Nor is a read that starts, of a
// blob idle for longer than Grace, after a run read the accesses: the run
// may remove the blob under it, and the mirror must take that for a miss.
// S3 has no conditional DELETE that every server honours, so a blob filled
// again between the janitor's last check (its fill lease, then its stat)
// and its delete is removed; the blob is content-addressed and is fetched
// again on its next miss. Accesses that a replica could not flush before
// it died are lost, making its blobs look older than they are. The blobs'
// prefix and the leases' prefix must be the same. The budget counts the
// blobs only, not the access and lease objects. A run holds the listing in
// memory, some 150 bytes a blob.
package s3janitor
