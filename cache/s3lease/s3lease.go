package s3lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/s3utils"
)

// Options say where the leases are. Bucket is required; the zero value of
// every other field is the default.
type Options struct {
	// Bucket must exist.
	Bucket string
	// Prefix is put before every key, as s3blobs.Options.Prefix is (a "/"
	// is added when it does not end in one): give both the same, and the
	// leases sit beside the blobs, under <prefix>leases/.
	Prefix string
	// Now is the clock that expiry is decided by; nil is time.Now.
	Now func() time.Time
}

// Leases are the leases in one bucket under one prefix. They are safe
// for concurrent use. Make them with New.
type Leases struct {
	client *minio.Client
	bucket string
	prefix string
	now    func() time.Time
}

// ErrLost is returned by Renew and Release when the lease is no longer
// the caller's: another replica took it over after it expired, or it was
// released. Work done under it may be done twice.
var ErrLost = errors.New("lease lost")

// HeldError is returned by Acquire when another holder has the lease:
// the caller may read what it fetches or wait for Expires. Test for it
// with errors.As.
type HeldError struct {
	// Name is the lease's name.
	Name string
	// Holder is who holds it, as given to its Acquire.
	Holder string
	// Expires is when it ends unless renewed, by the holder's clock.
	Expires time.Time
}

var _ error = (*HeldError)(nil)

func (e *HeldError) Error() string {
	return fmt.Sprintf("lease %s is held by %s until %s", e.Name, e.Holder, e.Expires.Format(time.RFC3339Nano))
}

// maxRounds bounds how many times Acquire looks again when the lease
// changed between its read and its write (released, or taken over). A
// round that loses to another replica ends in a HeldError, so needing
// more rounds than this means something keeps rewriting the lease.
const maxRounds = 4

// New returns the leases in opts.Bucket reached with client, which
// s3blobs.NewClient makes from the blob store's options. It does not
// reach the server.
func New(client *minio.Client, opts Options) (*Leases, error) {
	if client == nil {
		return nil, errors.New("s3lease: no client")
	}
	if err := s3utils.CheckValidBucketName(opts.Bucket); err != nil {
		return nil, fmt.Errorf("s3lease: bucket %q: %w", opts.Bucket, err)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	return &Leases{client: client, bucket: opts.Bucket, prefix: normalPrefix(opts.Prefix), now: now}, nil
}

func normalPrefix(p string) string {
	if p == "" || strings.HasSuffix(p, "/") {
		return p
	}
	return p + "/"
}

// Acquire takes the lease name for holder until ttl from now: it creates
// the lease, or takes it over when the one there has expired. When
// another holder has it, or wins a race for it, the error is a
// *HeldError; any other error means Acquire could not tell (the server
// failed or refused the credentials), and the caller holds nothing. It is
// not reentrant: a holder acquiring a lease it holds gets a HeldError
// naming itself.
func (l *Leases) Acquire(ctx context.Context, name, holder string, ttl time.Duration) (*Lease, error) {
	if err := l.checkAcquire(name, holder, ttl); err != nil {
		return nil, err
	}
	lease := &Lease{leases: l, name: name, key: l.key(name), holder: holder, ttl: ttl, token: newToken()}
	for range maxRounds {
		held, err := l.acquireRound(ctx, lease)
		switch {
		case err != nil:
			return nil, l.objectError("acquire", lease.key, err)
		case held != nil:
			return nil, held
		case lease.etag != "":
			return lease, nil
		}
	}
	return nil, fmt.Errorf("s3lease: acquire %s: the lease changed under each of %d tries", l.location(lease.key), maxRounds)
}

// acquireRound makes one attempt: it creates the lease, or when there is
// one reads it and takes it over if it has expired. It sets lease's ETag
// when the lease is taken, returns the holder's HeldError when it is
// not, and neither when the lease changed under it and another round
// should look again.
func (l *Leases) acquireRound(ctx context.Context, lease *Lease) (*HeldError, error) {
	rec := lease.newRecord(l.now())
	etag, err := l.put(ctx, lease.key, rec, createOnly())
	if err == nil {
		lease.set(rec, etag)
		return nil, nil
	}
	if !isPreconditionFailed(err) {
		return nil, err
	}
	cur, err := l.read(ctx, lease.key)
	switch {
	case isNotFound(err):
		return nil, nil // released meanwhile
	case err != nil:
		return nil, err
	case cur.Token == lease.token:
		// A try of the create that minio retried got through, and its
		// answer was lost.
		lease.set(cur.record, cur.etag)
		return nil, nil
	case cur.liveAt(l.now()):
		return &HeldError{Name: lease.name, Holder: cur.Holder, Expires: cur.Expires}, nil
	}
	rec = lease.newRecord(l.now())
	etag, err = l.put(ctx, lease.key, rec, ifMatch(cur.etag))
	switch {
	case err == nil:
		lease.set(rec, etag)
		return nil, nil
	case isPreconditionFailed(err) || isNotFound(err):
		return nil, nil // taken over or released meanwhile
	}
	return nil, err
}

func (l *Leases) checkAcquire(name, holder string, ttl time.Duration) error {
	switch {
	case holder == "":
		return fmt.Errorf("s3lease: acquire %q: no holder", name)
	case ttl <= 0 || ttl > MaxTTL:
		return fmt.Errorf("s3lease: acquire %q: the TTL %v is not positive and at most %v", name, ttl, MaxTTL)
	}
	return l.checkName(name)
}

func (l *Leases) checkName(name string) error {
	if name == "" {
		return errors.New("s3lease: a lease needs a name")
	}
	if err := s3utils.CheckValidObjectName(l.key(name)); err != nil {
		return fmt.Errorf("s3lease: lease name %q: %w", name, err)
	}
	return nil
}

// Held reports who holds the lease name and until when. ok is false when
// no one does: there is no lease, or the one there has expired, whose
// holder and expiry are returned all the same.
func (l *Leases) Held(ctx context.Context, name string) (holder string, expires time.Time, ok bool, err error) {
	if err := l.checkName(name); err != nil {
		return "", time.Time{}, false, err
	}
	cur, err := l.read(ctx, l.key(name))
	switch {
	case isNotFound(err):
		return "", time.Time{}, false, nil
	case err != nil:
		return "", time.Time{}, false, l.objectError("read", l.key(name), err)
	}
	return cur.Holder, cur.Expires, cur.liveAt(l.now()), nil
}

// HeldUnder reports whether anyone holds the lease name or a lease
// under it ("<name>/..."), such as the FillName leases of a blob under
// its BlobName. A lease object it cannot read is an error.
func (l *Leases) HeldUnder(ctx context.Context, name string) (bool, error) {
	if err := l.checkName(name); err != nil {
		return false, err
	}
	key := l.key(name)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the listing when a held lease ends it early
	for obj := range l.client.ListObjects(ctx, l.bucket, minio.ListObjectsOptions{Prefix: key, Recursive: true}) {
		if obj.Err != nil {
			return false, l.objectError("list", key, obj.Err)
		}
		if obj.Key != key && !strings.HasPrefix(obj.Key, key+"/") {
			continue
		}
		cur, err := l.read(ctx, obj.Key)
		switch {
		case isNotFound(err):
			continue // released meanwhile
		case err != nil:
			return false, l.objectError("read", obj.Key, err)
		case cur.liveAt(l.now()):
			return true, nil
		}
	}
	return false, nil
}

// key is the object key of the lease name.
func (l *Leases) key(name string) string { return l.prefix + "leases/" + name }

// location names an object for errors: s3://bucket/key.
func (l *Leases) location(key string) string { return "s3://" + l.bucket + "/" + key }

// objectError says which operation failed on which lease object; minio's
// error stays reachable with errors.As.
func (l *Leases) objectError(op, key string, err error) error {
	return fmt.Errorf("s3lease: %s %s: %w", op, l.location(key), err)
}

// newToken is a random token, new at each Acquire.
func newToken() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
