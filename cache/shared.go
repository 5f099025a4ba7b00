package cache

import (
	"context"
	"io"

	"github.com/opencontainers/go-digest"
)

// SharedBlobs is a blob store that other replicas read too, such as a
// bucket: what one replica downloads, the others find there instead of
// asking the upstream again.
type SharedBlobs interface {
	// Share stores the size bytes of r as blob d, verified, unless the
	// store has it already, and records that repository repo (a cache
	// key, "<host>/<path>") holds it: repo's upstream sent it.
	Share(ctx context.Context, repo string, d digest.Digest, r io.Reader, size int64) error
}

// shareDownload copies a download that the cache has just kept to the
// shared store. It runs after the readers have every byte, so that they
// do not wait for it, but before the download's fill ends: whoever holds
// the fill's lease in the shared store holds it until the blob is there,
// so that no other replica starts a second download in between. A failure
// is logged and leaves the cached copy as it is: the other replicas cost
// the upstream one more GET, and nobody gets a wrong byte.
func (s *Store) shareDownload(ctx context.Context, dl *download) {
	if s.shared == nil {
		return
	}
	size := dl.size
	if size < 0 {
		size = dl.written
	}
	err := s.shared.Share(ctx, dl.repo, dl.digest, io.NewSectionReader(dl.file, 0, size), size)
	if err != nil {
		s.metrics.shareFailures.Inc()
		s.log.Warn("could not copy a blob to the shared store; other replicas will download it again",
			"digest", dl.digest, "error", err)
	}
}
