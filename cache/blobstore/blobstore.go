// Package blobstore names what the cache needs from wherever it keeps blob
// bytes: content-addressed objects, written to a temporary object and
// published atomically, read from any offset, stated, removed and listed.
// The cache's files under <dir>/blobs are today's implementation (in
// package cache); cache/s3blobs keeps them in an S3-compatible bucket. Every
// implementation must pass the contract suite in cache/storagetest.
//
// The store keeps bytes, not meaning: it does not hash what it is given
// (the cache verifies every blob before it commits it, and re-hashes a
// blob on its first read in a process), and it keeps no index. The index
// rows (sizes, access times, manifests, tags, links) go through an
// interface of their own, cache/index.
package blobstore

import (
	"context"
	"io"
	"io/fs"
	"time"

	"github.com/opencontainers/go-digest"
)

// Interface stores blobs by digest. Its methods are safe for concurrent
// use. Every digest passed to it must be valid (digest.Digest.Validate)
// and of an algorithm the implementation supports: the caller checks, so
// that the read path does not check twice.
//
// An object is either absent or complete: a writer's bytes become visible
// all at once, at Commit, and never in part. Content addressing makes two
// commits of one digest equivalent, so the later simply replaces the
// earlier.
type Interface interface {
	// Create starts writing the blob d to a temporary object that Open,
	// Stat and Walk do not see until the Writer commits it. It fails with
	// the implementation's error when no temporary object can be made
	// (a full or read-only disk).
	Create(ctx context.Context, d digest.Digest) (Writer, error)
	// Open opens the blob d for reading from its start. It fails with an
	// error wrapping fs.ErrNotExist when d is not stored.
	Open(ctx context.Context, d digest.Digest) (File, error)
	// Stat describes the blob d. It fails with an error wrapping
	// fs.ErrNotExist when d is not stored.
	Stat(ctx context.Context, d digest.Digest) (Info, error)
	// Remove deletes the blob d. It fails with an error wrapping
	// fs.ErrNotExist when d is not stored. A File opened before keeps
	// returning the blob's bytes or fails; it never returns other bytes.
	// (The local implementation keeps it readable to its end; the cache
	// never removes a blob that has an open reader anyway.)
	Remove(ctx context.Context, d digest.Digest) error
	// Walk calls fn with the digest of every committed blob, once each,
	// streaming, in no particular order; temporary objects are not
	// listed. Blobs committed or removed while it runs may or may not be
	// listed. It stops at, and returns, the first error of fn, ctx or the
	// listing itself.
	Walk(ctx context.Context, fn func(digest.Digest) error) error
}

// Writer writes one blob into a temporary object. Write and Commit are
// called by one goroutine; ReadAt may be called concurrently with them, by
// readers following the download, and keeps working after Commit until
// Close.
type Writer interface {
	io.Writer
	// ReadAt reads what was written so far.
	io.ReaderAt
	// Commit makes what was written the blob, durably (it survives a
	// crash once Commit returns) and atomically (a reader sees the whole
	// blob or none). It fails with the implementation's error, leaving
	// the blob absent or as it was before.
	Commit(ctx context.Context) error
	// Abort discards the temporary object unless it was committed; after
	// Commit it does nothing. ReadAt still works until Close.
	Abort() error
	// Close releases the writer, and discards the temporary object if it
	// was neither committed nor aborted.
	Close() error
}

// File reads a stored blob. It is not safe for concurrent use, but for
// ReadAt. Read at the end, and ReadAt at or past the end, return io.EOF.
// The local implementation's File is an *os.File, which callers may
// detect to have the kernel send it (sendfile).
type File interface {
	io.ReadSeekCloser
	io.ReaderAt
	// Stat reports the blob's size (and, as the local implementation
	// keeps it, when it was committed).
	Stat() (fs.FileInfo, error)
}

// Info describes a stored blob.
type Info struct {
	Size int64
	// ModTime is when the blob was committed, as well as the store knows.
	ModTime time.Time
}
