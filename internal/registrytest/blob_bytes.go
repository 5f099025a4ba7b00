package registrytest

import (
	"bytes"
	"fmt"

	"github.com/opencontainers/go-digest"
)

// Blob returns a copy of the bytes of blob d, as the registry serves them
// without faults, so that a test can compare what a client received.
func (r *Registry) Blob(d digest.Digest) ([]byte, error) {
	h, err := blobHash(d)
	if err != nil {
		return nil, fmt.Errorf("registrytest: blob %q: %w", d, err)
	}
	data, ok := r.blobs.get(h)
	if !ok {
		return nil, fmt.Errorf("registrytest: no blob %s", d)
	}
	return bytes.Clone(data), nil
}
