package registrytest

import "github.com/opencontainers/go-digest"

// PutBlobAs is PutBlob for a blob named by its digest under alg (sha256 or
// sha512), as a registry that stores sha512 content names it.
func (r *Registry) PutBlobAs(alg digest.Algorithm, data []byte) digest.Digest {
	d := alg.FromBytes(data)
	h, err := blobHash(d)
	if err != nil {
		panic("registrytest: " + err.Error()) // only sha256 and sha512 reach here
	}
	r.blobs.put(h, data)
	return d
}
