package s3lease

import (
	"crypto/sha256"
	"encoding/hex"

	"github.com/opencontainers/go-digest"
)

// BlobName names the leases on filling the blob d, "blob-<alg>-<hex>":
// the replica that fetches d for a repository holds the FillName lease
// under it while it does, and the janitor leaves d alone while anyone
// holds a lease there (HeldUnder). Both sides take the names from here,
// so that they agree.
func BlobName(d digest.Digest) string {
	return "blob-" + string(d.Algorithm()) + "-" + d.Encoded()
}

// FillName is the name of the lease on filling blob d for repository
// repo, "<BlobName(d)>/<hash of repo>": one download at a time per
// repository and digest, so that a download for one repository (from a
// slow or hostile registry, say) never holds up one for another, which
// must ask its own upstream anyway. HeldUnder(BlobName(d)) sees it. The
// repository is hashed to keep the key short whatever its name.
func FillName(repo string, d digest.Digest) string {
	sum := sha256.Sum256([]byte(repo))
	return BlobName(d) + "/" + hex.EncodeToString(sum[:16])
}
