package mirror

import (
	"context"
	"io"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Cache is what the mirror needs from the content-addressed store.
// Repositories are named with their registry host, e.g. "docker.io/library/node",
// so same-named repositories of different registries never mix.
// Every method returns an error wrapping fs.ErrNotExist when the content is absent.
type Cache interface {
	// ReadBlob opens the cached blob d for reading from offset and returns its total size.
	ReadBlob(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, int64, error)
	// FetchBlob serves d from the cache, or downloads it with fetch on a miss.
	// Concurrent calls for one digest share one download; the returned reader
	// streams the bytes as they arrive, starting at offset. size is -1 when
	// fetch could not tell it. coalesced reports that another call's download
	// (or one that just completed) served this one. The reader's Read fails
	// if the download fails verification, and never yields the blob's last
	// byte before the digest has been verified.
	FetchBlob(ctx context.Context, repo string, d digest.Digest, offset int64,
		fetch func(context.Context) (io.ReadCloser, int64, error)) (rc io.ReadCloser, size int64, coalesced bool, err error)

	// Manifest returns a cached manifest's media type and exact bytes.
	Manifest(ctx context.Context, d digest.Digest) (mediaType string, data []byte, err error)
	// PutManifest stores a manifest under the sha256 of data, which it returns.
	PutManifest(ctx context.Context, repo, mediaType string, data []byte) (digest.Digest, error)
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
	// GetBlob opens a blob download; size is -1 when unknown. The caller verifies the digest.
	GetBlob(ctx context.Context, repo string, d digest.Digest) (io.ReadCloser, int64, error)
	// ListTags returns all tags of repo.
	ListTags(ctx context.Context, repo string) ([]string, error)
}
