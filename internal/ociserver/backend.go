package ociserver

import (
	"context"
	"io"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Backend is what the server needs of a registry: repository-scoped reads
// and writes in the distribution API's terms, with no HTTP in them. Errors
// are *Error values, or errors wrapping one, where the client must see a
// particular code; anything else is answered as an internal error.
//
// Implementations compose: a proxy of upstream registries, hosted
// repositories, a group that asks one and then the other, and policy
// wrappers that refuse what a client may not do all implement it.
type Backend interface {
	Reader
	Writer
}

// Repo names a repository as the client did: its name in the path and
// containerd's ns parameter, before any routing.
type Repo struct {
	Name string
	NS   string
}

// Reader answers pulls.
type Reader interface {
	// GetManifest returns the manifest that ref, a tag or a digest, names.
	GetManifest(ctx context.Context, repo Repo, ref string) (*Manifest, error)
	// GetBlob opens blob d from offset on, or from an earlier offset
	// (Blob.Offset tells where the body starts).
	GetBlob(ctx context.Context, repo Repo, d digest.Digest, offset int64) (*Blob, error)
	// Tags lists the repository's tags, in any order and possibly with
	// duplicates: the server sorts, deduplicates and pages them.
	Tags(ctx context.Context, repo Repo) ([]string, error)
	// Referrers lists the manifests whose subject is d; none is not an error.
	Referrers(ctx context.Context, repo Repo, d digest.Digest) ([]ocispec.Descriptor, error)
	// Catalog lists the repositories the client may read, in any order.
	Catalog(ctx context.Context) ([]string, error)
}

// Writer answers pushes and deletes.
type Writer interface {
	// StartUpload opens an upload session and returns its id.
	StartUpload(ctx context.Context, repo Repo) (id string, err error)
	// UploadSize returns how many bytes the upload holds.
	UploadSize(ctx context.Context, repo Repo, id string) (int64, error)
	// WriteUpload appends body, of length bytes (-1 when unknown), at
	// offset and returns the upload's new size. When offset is not the
	// upload's size it fails with an error implementing
	// interface{ UploadSize() int64 }.
	WriteUpload(ctx context.Context, repo Repo, id string, offset, length int64, body io.Reader) (int64, error)
	// CommitUpload ends the upload, storing its bytes as blob d.
	CommitUpload(ctx context.Context, repo Repo, id string, d digest.Digest) error
	// CancelUpload ends the upload, discarding its bytes.
	CancelUpload(ctx context.Context, repo Repo, id string) error
	// MountBlob adds blob d, held by the repository named from, to repo.
	// mounted is false, with no error, when it cannot be mounted and the
	// client should upload it instead.
	MountBlob(ctx context.Context, repo Repo, from string, d digest.Digest) (mounted bool, err error)
	// PushManifest stores the manifest that read returns, parsed and
	// checked. The server reads the pushed bytes only when the backend
	// calls read, so that a push the client may not make is refused
	// before its body costs anything.
	PushManifest(ctx context.Context, repo Repo, read func() (*PushedManifest, error)) error
	// DeleteManifest removes manifest d; DeleteTag removes a tag, keeping
	// its manifest; DeleteBlob removes blob d from the repository.
	DeleteManifest(ctx context.Context, repo Repo, d digest.Digest) error
	DeleteTag(ctx context.Context, repo Repo, tag string) error
	DeleteBlob(ctx context.Context, repo Repo, d digest.Digest) error
}

// Manifest is a manifest's exact bytes as stored and served.
type Manifest struct {
	Digest    digest.Digest
	MediaType string
	Data      []byte
}

// Blob is an open blob body.
type Blob struct {
	// Body reads the blob from Offset on. The server closes it. When it
	// implements interface{ VerifiedFile() *os.File } and that returns a
	// file, the server sends the file with sendfile.
	Body io.ReadCloser
	// Offset is where Body starts.
	Offset int64
	// Size is the blob's full size, -1 while unknown.
	Size int64
	// Source labels the bytes sent in the server's metrics: "cache",
	// "upstream", "hosted".
	Source string
}

// PushedManifest is a manifest a client pushed, parsed and checked by the
// server.
type PushedManifest struct {
	// Desc describes it as the referrers API lists it.
	Desc ocispec.Descriptor
	Data []byte
	// Refs are the blobs and manifests it names, which the repository must
	// hold for it to be pulled.
	Refs []digest.Digest
	// Subject, when set, is the manifest it refers to.
	Subject digest.Digest
	// Tags are the tags to point at it: the reference it was pushed to
	// when that is a tag, and any ?tag= parameters.
	Tags []string
}
