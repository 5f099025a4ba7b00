package s3lease

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/minio/minio-go/v7"
)

// record is a lease object's body.
type record struct {
	Holder string `json:"holder"`
	// Expires is when the lease ends unless renewed, by the holder's
	// clock; Taken is when it was acquired. Both are RFC 3339 with
	// nanoseconds, as encoding/json writes a time.Time.
	Expires time.Time `json:"expires"`
	Taken   time.Time `json:"taken"`
	// Token is new at each Acquire: it tells one acquisition from
	// another of the same holder, and the lease's own writes from a
	// takeover's when an ETag is not enough.
	Token string `json:"token"`
}

// liveAt reports whether the lease has yet to expire at now.
// MaxTTL is the longest a lease may be taken or renewed for. A lease that
// claims to last longer from now than MaxTTL (written by hand, or by a
// replica whose clock runs far ahead) is taken for expired: it would
// otherwise hold its work up for as long as it claims.
const MaxTTL = time.Hour

func (r record) liveAt(now time.Time) bool {
	return now.Before(r.Expires) && r.Expires.Sub(now) <= MaxTTL
}

// current is a lease object as read: its record and ETag.
type current struct {
	record
	etag string
}

// maxRecordSize caps what is read of a lease object, far above any
// record, so that a stray large object under leases/ is not read whole.
const maxRecordSize = 64 << 10

// read gets the lease object at key with the ETag of the same response.
func (l *Leases) read(ctx context.Context, key string) (current, error) {
	body, info, _, err := minio.Core{Client: l.client}.GetObject(ctx, l.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return current{}, err
	}
	defer body.Close()
	data, err := io.ReadAll(io.LimitReader(body, maxRecordSize+1))
	if err != nil {
		return current{}, err
	}
	var rec record
	if len(data) > maxRecordSize {
		return current{}, fmt.Errorf("the lease object is over %d bytes: not a lease", maxRecordSize)
	}
	if err := json.Unmarshal(data, &rec); err != nil || rec.Token == "" || rec.Expires.IsZero() {
		return current{}, fmt.Errorf("the lease object does not hold a lease (%q)", truncate(data, 100))
	}
	return current{record: rec, etag: info.ETag}, nil
}

// put writes rec at key under the condition in opts, and returns the new
// object's ETag.
func (l *Leases) put(ctx context.Context, key string, rec record, opts minio.PutObjectOptions) (string, error) {
	data, err := json.Marshal(rec)
	if err != nil {
		return "", err
	}
	opts.ContentType = "application/json"
	info, err := l.client.PutObject(ctx, l.bucket, key, bytes.NewReader(data), int64(len(data)), opts)
	if err != nil {
		return "", err
	}
	if info.ETag == "" {
		return "", errors.New("the server answered the PUT with no ETag, which conditional writes need")
	}
	return info.ETag, nil
}

// createOnly are the options of a PUT that creates the object or fails
// with 412 when there is one: If-None-Match: *.
func createOnly() minio.PutObjectOptions {
	var opts minio.PutObjectOptions
	opts.SetMatchETagExcept("*")
	return opts
}

// ifMatch are the options of a PUT that replaces the object whose ETag is
// etag, or fails with 412 when it has another (or 404 when it is gone).
func ifMatch(etag string) minio.PutObjectOptions {
	var opts minio.PutObjectOptions
	opts.SetMatchETag(etag)
	return opts
}

func isPreconditionFailed(err error) bool {
	return err != nil && minio.ToErrorResponse(err).StatusCode == http.StatusPreconditionFailed
}

// isNotFound reports whether err says the object does not exist. Only
// the code counts, which GET and PUT answers carry: a 404 may say other
// things, a missing bucket or (versitygw's XAdminUserNotFound) an unknown
// access key, and neither is a free lease.
func isNotFound(err error) bool {
	return minio.ToErrorResponse(err).Code == minio.NoSuchKey
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}
