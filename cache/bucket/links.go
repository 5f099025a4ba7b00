package bucket

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"

	"github.com/minio/minio-go/v7"
	"github.com/opencontainers/go-digest"
)

// links are the bucket's records of which repositories hold which blobs:
// an empty object <prefix>links/<host>/<path>/<algorithm>/<hex> for each
// blob a replica fetched for a repository from that repository's
// upstream. The bucket is read for a repository only through its links,
// as a replica's own cache is: a digest of a private repository's layer,
// asked for under a public repository of the same upstream, is not read
// from the bucket, where any replica put it, but asked of the upstream
// under the public repository, which answers 404 when it does not hold it.
type links struct {
	client *minio.Client
	bucket string
	prefix string
}

func (l links) key(repo string, d digest.Digest) string {
	return l.prefix + "links/" + repo + "/" + d.Algorithm().String() + "/" + d.Encoded()
}

// check returns nil when repo holds d, and an error wrapping
// fs.ErrNotExist when it does not.
func (l links) check(ctx context.Context, repo string, d digest.Digest) error {
	key := l.key(repo, d)
	if _, err := l.client.StatObject(ctx, l.bucket, key, minio.StatObjectOptions{}); err != nil {
		return l.pathError("read link", key, err)
	}
	return nil
}

// add records that repo holds d.
func (l links) add(ctx context.Context, repo string, d digest.Digest) error {
	key := l.key(repo, d)
	_, err := l.client.PutObject(ctx, l.bucket, key, bytes.NewReader(nil), 0, minio.PutObjectOptions{})
	if err != nil {
		return l.pathError("write link", key, err)
	}
	return nil
}

func (l links) pathError(op, key string, err error) error {
	resp := minio.ToErrorResponse(err)
	if resp.Code == minio.NoSuchKey || resp.StatusCode == http.StatusNotFound && resp.Code != minio.NoSuchBucket {
		err = fs.ErrNotExist
	}
	return &fs.PathError{Op: "s3 " + op, Path: fmt.Sprintf("s3://%s/%s", l.bucket, key), Err: err}
}

func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

// Linked reports whether repository repo holds blob d by the bucket's
// links: its upstream sent d to one of the replicas.
func (b *Bucket) Linked(ctx context.Context, repo string, d digest.Digest) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	err := b.links.check(ctx, repo, d)
	if isNotExist(err) {
		return false, nil
	}
	return err == nil, err
}

// Link records that repository repo holds blob d: its upstream sent d's
// bytes to this replica.
func (b *Bucket) Link(ctx context.Context, repo string, d digest.Digest) error {
	return b.links.add(ctx, repo, d)
}
