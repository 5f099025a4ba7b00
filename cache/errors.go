package cache

import (
	"errors"

	"github.com/regmirror/regmirror/cache/index"
)

var (
	// ErrLocked means another process holds the data directory.
	ErrLocked = errors.New("in use by another regmirror process")

	// ErrIndexDamaged means the index's files are torn or corrupt. The cache
	// refuses to open rather than guess: the index also holds the manifests
	// and tags of hosted repositories, which no blob file can bring back.
	ErrIndexDamaged = index.ErrDamaged

	// ErrClosed is returned by a Store, and by the readers of its downloads,
	// once Close has been called.
	ErrClosed = errors.New("cache closed")

	// ErrInvalidDigest means a digest is malformed.
	ErrInvalidDigest = errors.New("invalid digest")

	// ErrUnsupportedDigest means a digest uses an algorithm other than sha256
	// and sha512.
	ErrUnsupportedDigest = errors.New("unsupported digest algorithm")

	// ErrDigestMismatch means downloaded content does not hash to the expected digest.
	ErrDigestMismatch = errors.New("digest mismatch")

	// ErrSizeMismatch means a download's length differs from the size upstream announced.
	ErrSizeMismatch = errors.New("size mismatch")

	// ErrStalled means a download received no bytes for Options.StallTimeout.
	ErrStalled = errors.New("download stalled")

	// ErrBlobTooLarge means upstream announced, or sent, more bytes than
	// Limits.MaxBlobSize allows for one blob. It implements
	// interface{ BlobTooLarge() bool }, so that callers can tell it apart
	// without importing this package.
	ErrBlobTooLarge error = blobTooLarge{}

	// ErrFillTimeout means a download ran longer than Limits.FillTimeout.
	// Errors wrapping it also wrap context.DeadlineExceeded.
	ErrFillTimeout = errors.New("download took too long")

	// ErrAbandoned means a download was stopped because its last reader left
	// and the blob was not worth finishing for the cache alone.
	ErrAbandoned = errors.New("download abandoned")

	// ErrInvalidOffset means a read was asked to start outside the blob.
	ErrInvalidOffset = errors.New("offset out of range")

	// ErrInvalidName means a repository or tag name cannot be stored.
	ErrInvalidName = errors.New("invalid name")
)

type blobTooLarge struct{}

func (blobTooLarge) Error() string { return "blob larger than the cache accepts" }

// BlobTooLarge reports that the error is ErrBlobTooLarge.
func (blobTooLarge) BlobTooLarge() bool { return true }
