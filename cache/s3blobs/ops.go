package s3blobs

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/cache/blobstore"
)

// Create starts a spool file for d in the spool directory; nothing reaches
// the bucket before Commit.
func (s *Store) Create(_ context.Context, d digest.Digest) (blobstore.Writer, error) {
	return newWriter(s, s.key(d))
}

// Open stats the object of d, so that a missing blob fails here, and
// returns a File that reads it with ranged GETs.
func (s *Store) Open(ctx context.Context, d digest.Digest) (blobstore.File, error) {
	key := s.key(d)
	oi, err := s.client.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return nil, s.pathError("open", key, err)
	}
	return &file{store: s, key: key, name: d.Encoded(), size: oi.Size, modTime: oi.LastModified}, nil
}

// Stat stats the object of d.
func (s *Store) Stat(ctx context.Context, d digest.Digest) (blobstore.Info, error) {
	key := s.key(d)
	oi, err := s.client.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return blobstore.Info{}, s.pathError("stat", key, err)
	}
	return blobstore.Info{Size: oi.Size, ModTime: oi.LastModified}, nil
}

// Remove deletes the object of d, after a stat: S3 deletes a missing key
// without complaint, and the contract wants fs.ErrNotExist. A File open on
// it fails at its next request; a GET in flight may read on.
func (s *Store) Remove(ctx context.Context, d digest.Digest) error {
	key := s.key(d)
	if _, err := s.client.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{}); err != nil {
		return s.pathError("remove", key, err)
	}
	if err := s.client.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{}); err != nil {
		return s.pathError("remove", key, err)
	}
	return nil
}

// Walk lists the keys under the prefix's blobs/ and calls fn with the
// digest of each; keys that are not a blob's (anything written there by
// hand) are skipped. Incomplete multipart uploads are no objects and are
// never listed.
func (s *Store) Walk(ctx context.Context, fn func(digest.Digest) error) error {
	return s.WalkInfo(ctx, func(d digest.Digest, _ blobstore.Info) error { return fn(d) })
}

// WalkInfo is Walk with each blob's size and modification time as the
// listing tells them, so that a caller who needs them for every blob (the
// janitor adding up the bucket) does not stat each one.
func (s *Store) WalkInfo(ctx context.Context, fn func(digest.Digest, blobstore.Info) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("s3blobs: walk s3://%s/%s: %w", s.bucket, s.blobsPrefix(), err)
	}
	// Cancelling stops minio's listing goroutine when fn fails.
	listCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	objects := s.client.ListObjects(listCtx, s.bucket, minio.ListObjectsOptions{Prefix: s.blobsPrefix(), Recursive: true})
	for obj := range objects {
		if obj.Err != nil {
			return fmt.Errorf("s3blobs: walk s3://%s/%s: %w", s.bucket, s.blobsPrefix(), obj.Err)
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("s3blobs: walk s3://%s/%s: %w", s.bucket, s.blobsPrefix(), err)
		}
		d, ok := s.digestOf(obj.Key)
		if !ok {
			continue
		}
		if err := fn(d, blobstore.Info{Size: obj.Size, ModTime: obj.LastModified}); err != nil {
			return err
		}
	}
	// A listing cut short by ctx must not pass for a whole one.
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("s3blobs: walk s3://%s/%s: %w", s.bucket, s.blobsPrefix(), err)
	}
	return nil
}

// RemoveStaleUploads aborts the incomplete multipart uploads of blob keys
// that were started at least olderThan ago, and returns how many it
// aborted. They are Commits that a crash or a lost connection cut short:
// S3 never lists them as objects but keeps their parts, and bills for
// them, until they are aborted. An upload still in progress (another
// replica's, or a huge blob's) younger than olderThan is left alone.
func (s *Store) RemoveStaleUploads(ctx context.Context, olderThan time.Duration) (int, error) {
	listCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	aborted := 0
	for u := range s.client.ListIncompleteUploads(listCtx, s.bucket, s.blobsPrefix(), true) {
		if u.Err != nil {
			return aborted, fmt.Errorf("s3blobs: list multipart uploads under s3://%s/%s: %w", s.bucket, s.blobsPrefix(), u.Err)
		}
		if time.Since(u.Initiated) < olderThan {
			continue
		}
		err := minio.Core{Client: s.client}.AbortMultipartUpload(ctx, s.bucket, u.Key, u.UploadID)
		switch {
		case err == nil:
			aborted++
		case minio.ToErrorResponse(err).Code != "NoSuchUpload": // not aborted meanwhile by another replica
			return aborted, s.pathError("abort the multipart upload "+u.UploadID+" of", u.Key, err)
		}
	}
	return aborted, nil
}

// Put uploads the size bytes of r as blob d, unless the bucket has it
// already, and reports whether it uploaded. Unlike Create and Commit it
// spools nothing: it is for bytes the caller keeps elsewhere, verified,
// such as a blob the local cache has just stored. Like Commit, the key
// shows the whole blob or nothing.
func (s *Store) Put(ctx context.Context, d digest.Digest, r io.Reader, size int64) (bool, error) {
	key := s.key(d)
	_, err := s.client.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	switch {
	case err == nil:
		return false, nil
	case !isNotFound(err):
		return false, s.pathError("put", key, err)
	}
	_, err = s.client.PutObject(ctx, s.bucket, key, r, size,
		minio.PutObjectOptions{ContentType: "application/octet-stream", PartSize: s.partSize})
	if err != nil {
		return false, s.pathError("put", key, err)
	}
	return true, nil
}
