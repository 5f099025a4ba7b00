package bucket

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"

	"github.com/minio/minio-go/v7"
	"github.com/opencontainers/go-digest"
)

// maxManifestSize caps a manifest read from the bucket, as the registry
// API caps a pushed one.
const maxManifestSize = 4 << 20

// Manifests are objects of their own, <prefix>manifests/<alg>/<hex>, with
// their media type as the object's Content-Type: they are small, few,
// and needed whole, and the janitor's budget is for blobs. They are read
// for a repository through its links, as blobs are.

func (b *Bucket) manifestKey(d digest.Digest) string {
	return b.links.prefix + "manifests/" + d.Algorithm().String() + "/" + d.Encoded()
}

// ReadManifest reads manifest d for repository repo, and returns its
// media type and bytes, verified. It fails with an error wrapping
// fs.ErrNotExist when the bucket does not have d for repo, or had bytes
// that are not d's, which it removes so that d is fetched again.
func (b *Bucket) ReadManifest(ctx context.Context, repo string, d digest.Digest) (string, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	if err := b.links.check(ctx, repo, d); err != nil {
		return "", nil, err
	}
	key := b.manifestKey(d)
	obj, err := b.client.GetObject(ctx, b.links.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return "", nil, b.links.pathError("read manifest", key, err)
	}
	defer obj.Close()
	data, err := io.ReadAll(io.LimitReader(obj, maxManifestSize+1))
	if err != nil {
		return "", nil, b.links.pathError("read manifest", key, err)
	}
	info, err := obj.Stat()
	if err != nil {
		return "", nil, b.links.pathError("read manifest", key, err)
	}
	if len(data) > maxManifestSize || d.Algorithm().FromBytes(data) != d {
		b.dropCorruptManifest(key, d)
		return "", nil, fmt.Errorf("bucket: manifest %s: %w (removed): %w", d, ErrCorrupt, fs.ErrNotExist)
	}
	return info.ContentType, data, nil
}

// ShareManifest stores manifest d, verified, of mediaType, unless the
// bucket has it, and links it to repo.
func (b *Bucket) ShareManifest(ctx context.Context, repo string, d digest.Digest, mediaType string, data []byte) error {
	key := b.manifestKey(d)
	_, err := b.client.StatObject(ctx, b.links.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		if err := b.links.pathError("stat manifest", key, err); !isNotExist(err) {
			return err
		}
		_, err = b.client.PutObject(ctx, b.links.bucket, key, bytes.NewReader(data), int64(len(data)),
			minio.PutObjectOptions{ContentType: mediaType})
		if err != nil {
			return b.links.pathError("write manifest", key, err)
		}
	}
	return b.links.add(ctx, repo, d)
}

// dropCorruptManifest removes the object of manifest d at key, which does
// not hold d's bytes.
func (b *Bucket) dropCorruptManifest(key string, d digest.Digest) {
	b.metrics.corrupt.Inc()
	ctx, cancel := context.WithTimeout(context.Background(), removeTimeout)
	defer cancel()
	err := b.client.RemoveObject(ctx, b.links.bucket, key, minio.RemoveObjectOptions{})
	b.log.Error("a manifest in the bucket does not match its digest; removed it, it is fetched again",
		"digest", d, "remove_error", err)
}
