package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"

	"github.com/opencontainers/go-digest"
)

// VerifyOptions select what Verify checks.
type VerifyOptions struct {
	// Sample, when positive, checks that many blobs picked at random instead
	// of all of them.
	Sample int
	// Progress, when not nil, is called after each blob with the blobs and
	// bytes checked so far and the number to check.
	Progress func(done, total int, bytes int64)
}

// Verification reports what Verify found.
type Verification struct {
	Checked int   // blobs re-hashed
	Bytes   int64 // their bytes
	// Corrupt are the blobs whose file is missing, has the wrong size or
	// does not hash to its digest.
	Corrupt []CorruptBlob
	// Removal tells which corrupt blobs left the cache; those in use or
	// kept are reported only.
	Removal Removal
}

// CorruptBlob is a blob that failed verification, and why.
type CorruptBlob struct {
	Digest digest.Digest
	Reason string
}

// Verify re-hashes cached blobs and removes the corrupt ones, which a later
// pull then downloads again. Blobs marked by Keep and blobs in use are
// reported but not removed.
func (s *Store) Verify(ctx context.Context, opts VerifyOptions) (Verification, error) {
	blobs, err := s.Blobs(ctx)
	if err != nil {
		return Verification{}, fmt.Errorf("verify: %w", err)
	}
	if opts.Sample > 0 && opts.Sample < len(blobs) {
		rand.Shuffle(len(blobs), func(i, j int) { blobs[i], blobs[j] = blobs[j], blobs[i] })
		blobs = blobs[:opts.Sample]
	}
	var v Verification
	var corrupt []digest.Digest
	for _, b := range blobs {
		reason, err := s.checkBlob(ctx, b)
		if err != nil {
			return v, fmt.Errorf("verify %s: %w", b.Digest, err)
		}
		v.Checked++
		v.Bytes += b.Size
		if reason != "" {
			v.Corrupt = append(v.Corrupt, CorruptBlob{Digest: b.Digest, Reason: reason})
			corrupt = append(corrupt, b.Digest)
		}
		if opts.Progress != nil {
			opts.Progress(v.Checked, len(blobs), v.Bytes)
		}
	}
	if v.Removal, err = s.RemoveBlobs(ctx, corrupt, nil); err != nil {
		return v, fmt.Errorf("verify: %w", err)
	}
	return v, nil
}

// checkBlob re-hashes one blob, registered as its reader so that it is not
// removed meanwhile. It returns why the blob is corrupt, or "" when it is
// sound or was removed since it was listed.
func (s *Store) checkBlob(ctx context.Context, b BlobInfo) (reason string, err error) {
	if _, ok := s.uses.acquire(b.Digest); !ok {
		return "", nil
	}
	defer s.uses.release(b.Digest)
	f, err := s.blobs.Open(ctx, b.Digest)
	if errors.Is(err, fs.ErrNotExist) {
		if indexed, err := s.hasBlob(ctx, b.Digest); err != nil || !indexed {
			return "", err
		}
		return "file missing", nil
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	n, got, err := hashFile(ctx, f, b.Digest.Algorithm())
	if err != nil {
		return "", err
	}
	switch {
	case n != b.Size:
		return fmt.Sprintf("%d bytes on disk, %d indexed", n, b.Size), nil
	case got != b.Digest:
		return "content hashes to " + got.String(), nil
	}
	return "", nil
}

// hashFile reads f to its end and hashes it with alg, which must be one of
// the store's algorithms, checking ctx between chunks so that a long
// verification stops promptly.
func hashFile(ctx context.Context, f io.Reader, alg digest.Algorithm) (int64, digest.Digest, error) {
	h := alg.Hash()
	buf := make([]byte, copyBufferSize)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, "", err
		}
		m, err := f.Read(buf)
		h.Write(buf[:m])
		n += int64(m)
		if err == io.EOF {
			return n, digest.NewDigest(alg, h), nil
		}
		if err != nil {
			return n, "", err
		}
	}
}
