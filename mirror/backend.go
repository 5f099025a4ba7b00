package mirror

import (
	"context"
	"io"
	"time"

	"github.com/opencontainers/go-digest"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmirror/regmirror/internal/bloblookup"
)

// Cache is what the mirror needs from the content-addressed store.
// Repositories are named with their registry host, e.g. "docker.io/library/node",
// so same-named repositories of different registries never mix.
// Every method returns an error wrapping fs.ErrNotExist when the content is absent.
type Cache interface {
	// LookupBlob reads, in one read of the index, whether blob d is
	// cached, whether repo holds it and, when it does not, which
	// repositories do; the lookup opens or downloads it without reading
	// the index again.
	LookupBlob(ctx context.Context, repo string, d digest.Digest) (bloblookup.Lookup, error)
	// ReadBlob opens the cached blob d for reading from offset and returns
	// its total size (for the browser, which reads image configs).
	ReadBlob(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, int64, error)
	// JoinDownload reads d for repo from its download in flight, or from
	// the cache once that download has committed it; it never starts a
	// download, and fails wrapping fs.ErrNotExist when there is neither.
	JoinDownload(ctx context.Context, repo string, d digest.Digest, offset int64) (io.ReadCloser, int64, error)

	// Linked reports whether the cached repository repo holds d: it was
	// fetched through repo, or repo's upstream sent bytes hashing to d.
	Linked(ctx context.Context, repo string, d digest.Digest) (bool, error)
	// Holders returns the repositories holding d: cached ones by cache key,
	// hosted ones by hosted name.
	Holders(ctx context.Context, d digest.Digest) (cached, hosted []string, err error)
	// Downloading returns the repositories d is being downloaded for.
	Downloading(d digest.Digest) []string
	// Link records that the cached repository repo holds the stored d,
	// after its upstream sent bytes that hash to d.
	Link(ctx context.Context, repo string, d digest.Digest) error

	// Manifest returns a cached manifest's media type and exact bytes.
	Manifest(ctx context.Context, d digest.Digest) (mediaType string, data []byte, err error)
	// PutManifestAs stores a manifest under d, its digest by d's algorithm
	// (sha256 or sha512); other bytes are refused.
	PutManifestAs(ctx context.Context, repo string, d digest.Digest, mediaType string, data []byte) error
	// Tag returns the digest a tag pointed to and when that was last confirmed upstream.
	Tag(ctx context.Context, repo, tag string) (d digest.Digest, fetchedAt time.Time, err error)
	// PutTag records that repo:tag points to d, confirmed at fetchedAt.
	PutTag(ctx context.Context, repo, tag string, d digest.Digest, fetchedAt time.Time) error
}

// Upstream is one remote registry, as the mirror uses it. repo is the
// repository path on that registry (no host), e.g. "library/node".
// Errors carrying an HTTP status implement interface{ HTTPStatus() int } and,
// when retrying may help, interface{ Temporary() bool }.
type Upstream interface {
	// HeadManifest resolves a tag or digest to a descriptor without downloading the manifest.
	HeadManifest(ctx context.Context, repo, reference string) (ocispec.Descriptor, error)
	// GetManifest downloads a manifest, verifying its bytes against its digest.
	GetManifest(ctx context.Context, repo, reference string) (mediaType string, data []byte, err error)
	// GetBlob opens a download of blob d from offset on; start is where the
	// body begins (offset when the upstream honoured the range, 0 when it
	// sent the whole blob) and size the blob's full size, -1 when unknown.
	// The caller verifies the digest.
	GetBlob(ctx context.Context, repo string, d digest.Digest, offset int64) (body io.ReadCloser, start, size int64, err error)
	// ListTags returns all tags of repo. nextPage, when set, is asked before
	// every upstream request after the first; its error ends the listing.
	ListTags(ctx context.Context, repo string, nextPage func() error) ([]string, error)
	// Referrers returns the descriptors of repo's manifests whose subject
	// is subject, from the referrers API or the registry's tag-schema
	// fallback; none is not an error. nextPage is as for ListTags.
	Referrers(ctx context.Context, repo string, subject digest.Digest, nextPage func() error) ([]ocispec.Descriptor, error)
}

// Hosted is what the mirror needs from the store of the repositories clients
// push to. name is a hosted repository's name as the mirror resolves it:
// "team/app" for the default registry, "ghcr.io/org/app" for another.
// Methods fail with an error wrapping fs.ErrNotExist when the repository
// does not hold what they are asked for.
type Hosted interface {
	HostedUploads
	HostedQuotas
	HostedBlobs
	HostedManifests
	HostedTags
	HostedRepositories
}

// HostedUploads stages pushed blobs on disk until they are complete and
// their digest is verified. Sessions belong to one repository and survive
// a restart.
type HostedUploads interface {
	// StartUpload opens an empty upload session and returns its id.
	StartUpload(ctx context.Context, name string) (id string, err error)
	// UploadSize returns how many bytes the upload holds.
	UploadSize(ctx context.Context, name, id string) (int64, error)
	// WriteUpload appends body at offset and returns the upload's new size,
	// durably, also when body fails midway. When offset is not the upload's
	// size it fails with an error implementing interface{ UploadSize() int64 }.
	WriteUpload(ctx context.Context, name, id string, offset int64, body io.Reader) (int64, error)
	// CommitUpload ends the upload, storing its bytes as blob d of the
	// repository, and returns the blob's size. When the bytes do not hash to
	// d it stores nothing, ends the upload, and fails with an error
	// implementing interface{ ContentDigest() digest.Digest }.
	CommitUpload(ctx context.Context, name, id string, d digest.Digest) (int64, error)
	// CancelUpload ends the upload, discarding its bytes.
	CancelUpload(ctx context.Context, name, id string) error
}

// HostedBlobs are the blobs of hosted repositories.
type HostedBlobs interface {
	// StatBlob returns the size of blob d of the repository.
	StatBlob(ctx context.Context, name string, d digest.Digest) (int64, error)
	// OpenBlob opens blob d of the repository at offset and returns its size.
	OpenBlob(ctx context.Context, name string, d digest.Digest, offset int64) (io.ReadCloser, int64, error)
	// LinkBlob adds d, which must be stored already, to the repository (a
	// cross-repository mount) and returns its size.
	LinkBlob(ctx context.Context, name string, d digest.Digest) (int64, error)
	// UnlinkBlob removes blob d from the repository.
	UnlinkBlob(ctx context.Context, name string, d digest.Digest) error
}

// HostedManifests are the manifests of hosted repositories.
type HostedManifests interface {
	// PutManifest stores data, described by desc, in the repository, which
	// must hold refs, the blobs and manifests it names (pushed or mounted
	// into it); lists it among subject's referrers when subject is set; and
	// points tags at it. When the repository lacks some of refs it fails
	// with an error wrapping fs.ErrNotExist that implements
	// interface{ MissingDigest() digest.Digest }.
	PutManifest(ctx context.Context, name string, desc ocispec.Descriptor, data []byte,
		refs []digest.Digest, subject digest.Digest, tags []string) error
	// Manifest returns the media type and exact bytes of manifest d.
	Manifest(ctx context.Context, name string, d digest.Digest) (mediaType string, data []byte, err error)
	// DeleteManifest removes manifest d, the repository's tags that point to
	// it and its referrers entries.
	DeleteManifest(ctx context.Context, name string, d digest.Digest) error
	// Referrers returns the descriptors of the repository's manifests whose
	// subject is d; none is not an error.
	Referrers(ctx context.Context, name string, subject digest.Digest) ([]ocispec.Descriptor, error)
}

// HostedTags are the tags of hosted repositories.
type HostedTags interface {
	// Tag returns the digest of the manifest tag points to.
	Tag(ctx context.Context, name, tag string) (digest.Digest, error)
	// Tags returns the repository's tags in lexical order.
	Tags(ctx context.Context, name string) ([]string, error)
	// DeleteTag removes a tag; its manifest stays.
	DeleteTag(ctx context.Context, name, tag string) error
}

// HostedRepositories lists hosted repositories.
type HostedRepositories interface {
	// HasRepository reports whether the repository holds any content.
	HasRepository(ctx context.Context, name string) (bool, error)
	// Repositories lists the hosted repositories in lexical order.
	Repositories(ctx context.Context) ([]string, error)
}
