package bucket

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"

	"github.com/opencontainers/go-digest"
)

// ErrCorrupt is the error of a blob read from the bucket whose bytes do
// not hash to its digest: written there by hand, or damaged at rest.
var ErrCorrupt = errors.New("blob in the bucket does not match its digest")

// removeTimeout bounds the removal of a corrupt object.
const removeTimeout = 30 * time.Second

// verifyingReader hashes a whole blob as it is read and, at its end,
// removes the object from the bucket when the bytes do not match the
// digest, so that the next miss fetches the blob from the upstream
// instead of failing on the same bytes again. The reader's caller (the
// cache) verifies too and never keeps or hands out the last byte of a
// blob that does not match.
type verifyingReader struct {
	io.ReadCloser
	b      *Bucket
	digest digest.Digest
	hash   hash.Hash
	done   bool
}

func (b *Bucket) verifying(rc io.ReadCloser, d digest.Digest) io.ReadCloser {
	return &verifyingReader{ReadCloser: rc, b: b, digest: d, hash: d.Algorithm().Hash()}
}

func (r *verifyingReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.hash.Write(p[:n])
	if errors.Is(err, io.EOF) && !r.done {
		r.done = true
		if got := digest.NewDigest(r.digest.Algorithm(), r.hash); got != r.digest {
			r.b.dropCorrupt(r.digest, got)
			return n, fmt.Errorf("bucket: blob %s read as %s: %w", r.digest, got, ErrCorrupt)
		}
	}
	return n, err
}

// dropCorrupt removes blob d, which read as got, from the bucket.
func (b *Bucket) dropCorrupt(d, got digest.Digest) {
	b.metrics.corrupt.Inc()
	ctx, cancel := context.WithTimeout(context.Background(), removeTimeout)
	defer cancel()
	err := b.blobs.Remove(ctx, d)
	b.log.Error("a blob in the bucket does not match its digest; removed it, the next miss fetches it again",
		"digest", d, "read_as", got, "remove_error", err)
}
