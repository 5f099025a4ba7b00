package s3lease

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
)

// Lease is a holder's hold on one lease, made by Acquire. It is safe for
// concurrent use.
type Lease struct {
	leases *Leases
	name   string
	key    string
	holder string
	ttl    time.Duration
	token  string

	mu sync.Mutex
	// etag is the ETag of the lease object as this Lease last wrote it.
	etag    string
	taken   time.Time
	expires time.Time
	// released is set once Release has let the lease go.
	released bool
}

// Name is the lease's name.
func (lease *Lease) Name() string { return lease.name }

// Holder is the holder given to Acquire.
func (lease *Lease) Holder() string { return lease.holder }

// Expires is when the lease ends unless renewed, by the local clock.
func (lease *Lease) Expires() time.Time {
	lease.mu.Lock()
	defer lease.mu.Unlock()
	return lease.expires
}

// Renew extends the lease to the TTL from now, if it is still the one
// this Lease wrote: when another replica has taken it over, or it was
// released, the error wraps ErrLost. Any other error leaves the lease as
// it was, which the holder may still count on until Expires. Renew well
// before then; the package comment says how early.
func (lease *Lease) Renew(ctx context.Context) error {
	lease.mu.Lock()
	defer lease.mu.Unlock()
	l := lease.leases
	if lease.released {
		return fmt.Errorf("s3lease: renew %s: released: %w", l.location(lease.key), ErrLost)
	}
	// The second round follows a write of this Lease whose answer was
	// lost (a failed Renew, or a try that minio retried): it changed the
	// ETag, and the object still holds the token.
	for range 2 {
		rec := lease.newRecord(l.now())
		rec.Taken = lease.taken
		etag, err := l.put(ctx, lease.key, rec, ifMatch(lease.etag))
		if err == nil {
			lease.set(rec, etag)
			return nil
		}
		if !isPreconditionFailed(err) && !isNotFound(err) {
			return l.objectError("renew", lease.key, err)
		}
		cur, err := l.read(ctx, lease.key)
		switch {
		case isNotFound(err):
			return fmt.Errorf("s3lease: renew %s: released by another replica: %w", l.location(lease.key), ErrLost)
		case err != nil:
			return l.objectError("renew", lease.key, err)
		case cur.Token != lease.token:
			return fmt.Errorf("s3lease: renew %s: taken over by %s: %w", l.location(lease.key), cur.Holder, ErrLost)
		}
		lease.etag = cur.etag
	}
	return fmt.Errorf("s3lease: renew %s: the lease keeps changing under its own token", l.location(lease.key))
}

// Release lets the lease go: it deletes the lease object if it still
// holds this Lease's token and has not expired. An expired one is left
// for the next Acquire to take over, since another replica may be doing
// so already (the package comment tells the race that is left). When the
// lease was taken over or is gone, the error wraps ErrLost. Releasing
// again does nothing.
func (lease *Lease) Release(ctx context.Context) error {
	lease.mu.Lock()
	defer lease.mu.Unlock()
	if lease.released {
		return nil
	}
	l := lease.leases
	cur, err := l.read(ctx, lease.key)
	switch {
	case isNotFound(err):
		lease.released = true
		return fmt.Errorf("s3lease: release %s: gone: %w", l.location(lease.key), ErrLost)
	case err != nil:
		return l.objectError("release", lease.key, err)
	case cur.Token != lease.token:
		lease.released = true
		return fmt.Errorf("s3lease: release %s: taken over by %s: %w", l.location(lease.key), cur.Holder, ErrLost)
	case !cur.liveAt(l.now()):
		lease.released = true
		return nil
	}
	if err := l.client.RemoveObject(ctx, l.bucket, lease.key, minio.RemoveObjectOptions{}); err != nil {
		return l.objectError("release", lease.key, err)
	}
	lease.released = true
	return nil
}

// newRecord is the lease's record as taken at now.
func (lease *Lease) newRecord(now time.Time) record {
	now = now.UTC()
	return record{Holder: lease.holder, Taken: now, Expires: now.Add(lease.ttl), Token: lease.token}
}

// set notes that the lease object holds rec with etag.
func (lease *Lease) set(rec record, etag string) {
	lease.etag, lease.taken, lease.expires = etag, rec.Taken, rec.Expires
}
