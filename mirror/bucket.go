package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/internal/ociserver"
)

// Bucket is the blob store the replicas of a cluster share, as the mirror
// uses it (cache/bucket implements it).
type Bucket interface {
	// OpenBlob reads blob d from offset for repository repo (a cache
	// key) and returns its size. An error wrapping fs.ErrNotExist means
	// the bucket lacks d, or holds it only for other repositories, whose
	// upstreams were asked; any other, that the bucket did not answer.
	OpenBlob(ctx context.Context, repo string, d digest.Digest, offset int64) (io.ReadCloser, int64, error)
	// ClaimFill takes the lease of fetching d from repository repo's
	// upstream until ctx ends, and returns "", or returns the name of the
	// replica whose download of d for repo holds it.
	ClaimFill(ctx context.Context, repo string, d digest.Digest) (holder string, err error)
	// Holder is this replica's name in the leases.
	Holder() string
	// Linked reports whether repository repo holds d by the bucket's
	// records: its upstream sent d to one of the replicas. Link records
	// that it does.
	Linked(ctx context.Context, repo string, d digest.Digest) (bool, error)
	Link(ctx context.Context, repo string, d digest.Digest) error
	// ReadManifest reads manifest d for repository repo, verified; its
	// errors are OpenBlob's.
	ReadManifest(ctx context.Context, repo string, d digest.Digest) (mediaType string, data []byte, err error)
	// ShareManifest stores manifest d, verified, for repository repo.
	ShareManifest(ctx context.Context, repo string, d digest.Digest, mediaType string, data []byte) error
	// Touch records that d was just served, for the bucket's LRU.
	Touch(d digest.Digest)
}

// claimRetry is how long a download that found d's lease held waits
// before it looks again for the blob in the bucket and for the lease.
const claimRetry = time.Second

// bucketFirst reads d from the bucket when it has it for t, from next
// when it does not. A bucket that does not answer fails the download with 503:
// fetching d from the upstream instead could fetch it once per replica.
func (m *Mirror) bucketFirst(t target, d digest.Digest, next blobFetch) blobFetch {
	if m.bucket == nil {
		return next
	}
	return func(ctx context.Context, from int64) (io.ReadCloser, int64, int64, error) {
		body, start, size, found, err := m.fromBucket(ctx, t, d, from)
		if found || err != nil {
			return body, start, size, err
		}
		return next(ctx, from)
	}
}

// fromBucket reads d for t from the bucket from offset; found is false,
// with no error, when the bucket lacks d for t.
func (m *Mirror) fromBucket(ctx context.Context, t target, d digest.Digest, from int64) (body io.ReadCloser, start, size int64, found bool, err error) {
	body, size, err = m.bucket.OpenBlob(ctx, t.cacheKey(), d, from)
	switch {
	case err == nil:
		return body, from, size, true, nil
	case errors.Is(err, fs.ErrNotExist):
		return nil, 0, 0, false, nil
	case ctx.Err() != nil:
		return nil, 0, 0, false, err
	}
	return nil, 0, 0, false, bucketUnavailable(d, err)
}

func bucketUnavailable(d digest.Digest, err error) error {
	return &Error{Code: ociserver.CodeUnavailable,
		Message: fmt.Sprintf("blob %s is not cached here and the shared storage does not answer; try again later", d),
		Err:     bucketDown{err}}
}

// bucketDown is a failure of the bucket, which its client has tried
// twice already: the download does not try again, even when err (a
// timeout) says it is temporary, so that a bucket that does not answer
// turns a miss into a 503 after one bounded wait, not one per retry.
type bucketDown struct{ err error }

func (e bucketDown) Error() string   { return e.err.Error() }
func (e bucketDown) Unwrap() error   { return e.err }
func (e bucketDown) Temporary() bool { return false }

// leased wraps fetch, a download of d from the upstream, so that with a
// bucket it first takes d's fill lease for t there, for the whole
// download: the download that holds the lease is the only one, across
// replicas, that asks t's upstream for d. A download that finds the lease held
// reads d from the holder while it fetches it, or from the bucket once
// the holder has put it there, or takes the lease over once the holder
// has died and its lease expired.
func (m *Mirror) leased(t target, d digest.Digest, fetch blobFetch) blobFetch {
	if m.bucket == nil {
		return fetch
	}
	claimed := false // a download's fetches run one after another
	return func(ctx context.Context, from int64) (io.ReadCloser, int64, int64, error) {
		if !claimed {
			body, start, size, err := m.claimOrRead(ctx, t, d, from)
			if body != nil || err != nil {
				return body, start, size, err
			}
			claimed = true
		}
		return fetch(ctx, from)
	}
}

// claimOrRead takes d's fill lease and returns no body, or returns a body
// of d from offset from wherever another download that holds the lease
// puts it.
func (m *Mirror) claimOrRead(ctx context.Context, t target, d digest.Digest, from int64) (io.ReadCloser, int64, int64, error) {
	for {
		holder, err := m.bucket.ClaimFill(ctx, t.cacheKey(), d)
		if err != nil {
			if ctx.Err() != nil {
				return nil, 0, 0, err
			}
			return nil, 0, 0, bucketUnavailable(d, err)
		}
		// With the lease taken, d may still have reached the bucket just
		// before: its last holder released the lease after putting it.
		body, start, size, found, err := m.fromBucket(ctx, t, d, from)
		if found || err != nil || holder == "" {
			return body, start, size, err
		}
		if body, start, size, ok := m.fromHolder(ctx, t, d, holder, from); ok {
			return body, start, size, nil
		}
		select {
		case <-ctx.Done():
			return nil, 0, 0, context.Cause(ctx)
		case <-time.After(claimRetry):
		}
	}
}

// fromHolder reads d from the replica whose download holds its lease,
// which serves it from that download. A request from a peer is not sent
// on (no request travels further than one hop), nor one to this replica.
func (m *Mirror) fromHolder(ctx context.Context, t target, d digest.Digest, holder string, from int64) (io.ReadCloser, int64, int64, bool) {
	if m.peers == nil || sentByPeer(ctx) || holder == m.bucket.Holder() {
		return nil, 0, 0, false
	}
	body, start, size, err := m.peers.FetchBlob(ctx, holder, t.host, t.path, d, from)
	if err != nil {
		m.log.Debug("the replica holding a blob's lease did not serve it; waiting for the bucket",
			"peer", holder, "digest", d, "error", err)
		return nil, 0, 0, false
	}
	return body, start, size, true
}

// fromBucketSource names the bucket as where a manifest came from.
const fromBucketSource = "the shared bucket"

// bucketManifest reads manifest d of t from the bucket when it has it for
// t, from next when it does not; a bucket that does not answer fails the
// request with 503, as for blobs.
func (m *Mirror) bucketManifest(t target, d digest.Digest, next manifestFetch) manifestFetch {
	if m.bucket == nil {
		return next
	}
	return func(ctx context.Context) (fetchedManifest, error) {
		mediaType, data, err := m.bucket.ReadManifest(ctx, t.cacheKey(), d)
		switch {
		case err == nil:
			return fetchedManifest{mediaType: mediaType, data: data, from: fromBucketSource}, nil
		case errors.Is(err, fs.ErrNotExist):
			return next(ctx)
		case ctx.Err() != nil:
			return fetchedManifest{}, err
		}
		return fetchedManifest{}, &Error{Code: ociserver.CodeUnavailable,
			Message: fmt.Sprintf("manifest %s is not cached here and the shared storage does not answer; try again later", d),
			Err:     err}
	}
}

// shareManifest copies manifest d of t, verified, to the bucket, unless it
// came from there. A failure is logged: the other replicas fetch it again.
func (m *Mirror) shareManifest(ctx context.Context, t target, d digest.Digest, got fetchedManifest, mediaType string) {
	if m.bucket == nil || got.from == fromBucketSource {
		return
	}
	if err := m.bucket.ShareManifest(ctx, t.cacheKey(), d, mediaType, got.data); err != nil {
		m.log.Warn("could not copy a manifest to the shared bucket; other replicas will fetch it again",
			"digest", d, "error", err)
	}
}

// confirmedInBucket reports whether another replica already proved that
// t's upstream has d (see confirmBlob); an error, or no bucket, is no.
func (m *Mirror) confirmedInBucket(ctx context.Context, t target, d digest.Digest) bool {
	if m.bucket == nil {
		return false
	}
	linked, err := m.bucket.Linked(ctx, t.cacheKey(), d)
	return err == nil && linked
}

// recordConfirmed tells the other replicas that t's upstream has d. A
// failure costs them a confirmation of their own.
func (m *Mirror) recordConfirmed(ctx context.Context, t target, d digest.Digest) {
	if m.bucket == nil {
		return
	}
	if err := m.bucket.Link(ctx, t.cacheKey(), d); err != nil {
		m.log.Warn("could not record a confirmed blob in the shared bucket", "digest", d, "error", err)
	}
}
