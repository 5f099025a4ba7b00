package s3lease

import "github.com/opencontainers/go-digest"

// BlobName is the name of the lease on filling the blob d, "blob-<alg>-<hex>":
// the replica that fetches d holds it while it does, and the janitor
// leaves d alone while anyone holds it. Both sides take the name from
// here, so that they agree.
func BlobName(d digest.Digest) string {
	return "blob-" + string(d.Algorithm()) + "-" + d.Encoded()
}
