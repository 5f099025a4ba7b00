package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/opencontainers/go-digest"
)

// BucketContents is what ReadContent found in a bucket.
type BucketContents struct {
	// Blobs are the sizes of the blobs under <prefix>blobs/, each read
	// whole and found to hash to the digest its key names.
	Blobs map[digest.Digest]int64
	// Manifests are the sizes of the manifests under <prefix>manifests/,
	// checked in the same way.
	Manifests map[digest.Digest]int64
	// Others are the keys of the objects that are not content (links and
	// leases, for two).
	Others []string
	// Uploads are the keys of multipart uploads neither completed nor
	// aborted: no object, but what a writer killed mid-upload leaves.
	Uploads []string
}

// Where a bucket keeps content by digest, under the prefix: blobs as
// blobs/<algorithm>/<first two hex digits>/<hex>, manifests as
// manifests/<algorithm>/<hex>.
const (
	blobsDir     = "blobs/"
	manifestsDir = "manifests/"
)

// ReadContent lists the bucket with c and reads every blob and manifest
// object under prefix whole. It fails on an object whose key is not a
// digest in its layout or whose bytes do not hash to it: a partial upload
// or a torn write.
func ReadContent(ctx context.Context, c *minio.Client, bucket, prefix string) (BucketContents, error) {
	contents := BucketContents{Blobs: map[digest.Digest]int64{}, Manifests: map[digest.Digest]int64{}}
	var bad []error
	for obj := range c.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if obj.Err != nil {
			return contents, fmt.Errorf("list bucket %s: %w", bucket, obj.Err)
		}
		dir, d, err := contentKey(strings.TrimPrefix(obj.Key, prefix))
		if dir == "" {
			contents.Others = append(contents.Others, obj.Key)
			continue
		}
		if err == nil {
			err = verifyObject(ctx, c, bucket, obj.Key, d, obj.Size)
		}
		if err != nil {
			bad = append(bad, fmt.Errorf("object %s (%d bytes): %w", obj.Key, obj.Size, err))
			continue
		}
		if dir == blobsDir {
			contents.Blobs[d] = obj.Size
		} else {
			contents.Manifests[d] = obj.Size
		}
	}
	for upload := range c.ListIncompleteUploads(ctx, bucket, prefix, true) {
		if upload.Err != nil {
			return contents, fmt.Errorf("list multipart uploads of bucket %s: %w", bucket, upload.Err)
		}
		contents.Uploads = append(contents.Uploads, upload.Key)
	}
	return contents, errors.Join(bad...)
}

// contentKey reads the digest a key (without the prefix) names under
// blobsDir or manifestsDir, and says which; dir is empty for a key under
// neither.
func contentKey(key string) (dir string, d digest.Digest, err error) {
	if rest, ok := strings.CutPrefix(key, blobsDir); ok {
		d, err := keyDigest(rest, true)
		return blobsDir, d, err
	}
	if rest, ok := strings.CutPrefix(key, manifestsDir); ok {
		d, err := keyDigest(rest, false)
		return manifestsDir, d, err
	}
	return "", "", nil
}

// keyDigest reads <algorithm>/<hex>, or <algorithm>/<xx>/<hex> with
// fanOut, as a digest.
func keyDigest(key string, fanOut bool) (digest.Digest, error) {
	parts := strings.Split(key, "/")
	if fanOut {
		if len(parts) != 3 || len(parts[1]) != 2 || !strings.HasPrefix(parts[2], parts[1]) {
			return "", errors.New("key is not <algorithm>/<xx>/<hex>")
		}
		parts = []string{parts[0], parts[2]}
	}
	if len(parts) != 2 {
		return "", errors.New("key is not <algorithm>/<hex>")
	}
	d := digest.NewDigestFromEncoded(digest.Algorithm(parts[0]), parts[1])
	if err := d.Validate(); err != nil {
		return "", fmt.Errorf("key names no digest: %w", err)
	}
	return d, nil
}

// verifyObject reads an object whole and checks its size and digest.
func verifyObject(ctx context.Context, c *minio.Client, bucket, key string, want digest.Digest, size int64) error {
	obj, err := c.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return fmt.Errorf("get: %w", err)
	}
	defer obj.Close()
	digester := want.Algorithm().Digester()
	n, err := io.Copy(digester.Hash(), obj)
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if n != size {
		return fmt.Errorf("read %d bytes, listed as %d", n, size)
	}
	if got := digester.Digest(); got != want {
		return fmt.Errorf("bytes hash to %s", got)
	}
	return nil
}
