// Package bucket is the S3-compatible bucket that the replicas of a
// cluster share: the blobs every replica reads instead of asking the
// upstream again, and the leases that let one replica at a time fetch a
// blob from the upstream.
//
// Each replica keeps its local cache as a first level in front of the
// bucket. A blob it misses is read from the bucket when the bucket has
// it. When it does not, the replica that fetches it from the upstream
// first takes the blob's fill lease for its repository (ClaimFill),
// holds it until its download has been copied to the bucket
// (cache.SharedBlobs, which this package implements with Share), and
// then lets it go. A replica that finds the lease held reads the blob
// from the holder, or waits for the object, so that the upstream sees
// one GET per blob and repository even while replicas disagree about
// who owns which digest.
//
// A bucket that does not answer is not a missing blob: its errors are
// returned as they are, never as fs.ErrNotExist, so that the mirror
// answers 503 for what its local cache lacks rather than fetching it a
// second time from the upstream.
package bucket
