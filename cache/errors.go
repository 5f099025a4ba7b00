package cache

import "errors"

var (
	// ErrLocked means another process holds the data directory.
	ErrLocked = errors.New("in use by another regmirror process")

	// ErrClosed is returned by a Store, and by the readers of its downloads,
	// once Close has been called.
	ErrClosed = errors.New("cache closed")

	// ErrInvalidDigest means a digest is malformed.
	ErrInvalidDigest = errors.New("invalid digest")

	// ErrUnsupportedDigest means a digest uses an algorithm other than sha256.
	ErrUnsupportedDigest = errors.New("unsupported digest algorithm")

	// ErrDigestMismatch means downloaded content does not hash to the expected digest.
	ErrDigestMismatch = errors.New("digest mismatch")

	// ErrSizeMismatch means a download's length differs from the size upstream announced.
	ErrSizeMismatch = errors.New("size mismatch")

	// ErrStalled means a download received no bytes for Options.StallTimeout.
	ErrStalled = errors.New("download stalled")

	// ErrInvalidOffset means a read was asked to start outside the blob.
	ErrInvalidOffset = errors.New("offset out of range")

	// ErrInvalidName means a repository or tag name cannot be stored.
	ErrInvalidName = errors.New("invalid name")
)
