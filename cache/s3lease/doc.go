// Package s3lease keeps leases in an S3-compatible bucket, so that
// replicas sharing the bucket agree on who does a piece of work (fetching
// one blob from upstream, running the janitor) even when they disagree
// about who the replicas are.
//
// A lease is an object, <prefix>leases/<name>, holding JSON: its holder,
// when it was taken and when it expires, and a token that is new at each
// Acquire. Every change is a conditional PUT, so that of two replicas
// racing, S3 lets one through and answers the other 412 Precondition
// Failed: Acquire creates the object with If-None-Match: *, and takes an
// expired one over, Renew extends one, with If-Match on the ETag it read
// or wrote last. The token tells a replica its own lease from another's
// when a request was retried (its first try may have been the one that
// got through) and across ETags its own renewals changed.
//
// Expiry compares the reader's clock with the expiry the holder wrote by
// its own clock, so the replicas' clocks must agree to well within a TTL:
// a clock ahead by d sees every other replica's lease end d early. A
// holder must Renew well before its lease expires, and choose a TTL
// longer than the renew interval plus the worst clock skew plus the
// slowest request. With NTP-synchronised hosts (skew in milliseconds) a
// TTL of a minute renewed every twenty seconds leaves ample margin.
//
// A lease lasts at most MaxTTL from its last write: one claiming to last
// longer (written by hand, or by a clock far ahead) is taken for expired,
// so that no record can hold its work up forever.
//
// S3 has no conditional DELETE that every server honours (versitygw
// takes If-Match on DELETE, but minio-go's RemoveObject cannot send it),
// so Release reads the lease, checks that the token is still its own,
// and deletes it. A takeover can land between the read and the delete,
// which then deletes the new holder's lease. Release leaves a lease that
// has expired by its clock for the next Acquire to take over, so this
// needs a release within the clock skew, plus a request, of the lease's
// expiry. It costs little: a third replica may take the lease and fetch
// the same blob once more while the second is still at it, and the blob
// is content-addressed and verified either way.
package s3lease
