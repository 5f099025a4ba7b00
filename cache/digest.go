package cache

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
)

// algorithms are the digest algorithms the store accepts, each with its own
// directory in the blob tree. go-digest knows sha384 too; the distribution
// spec names only these two.
var algorithms = []digest.Algorithm{digest.SHA256, digest.SHA512}

// checkDigest accepts only well-formed digests of one of the algorithms.
// Every path and index key is built from a digest that passed it, so a
// request can never name a file outside the blob tree.
func checkDigest(d digest.Digest) error {
	err := d.Validate()
	switch {
	case errors.Is(err, digest.ErrDigestUnsupported):
		return fmt.Errorf("digest %q: %w", d, ErrUnsupportedDigest)
	case err != nil:
		return fmt.Errorf("digest %q: %w: %w", d, ErrInvalidDigest, err)
	case !slices.Contains(algorithms, d.Algorithm()):
		return fmt.Errorf("digest %q: %w", d, ErrUnsupportedDigest)
	}
	return nil
}

// checkName accepts repository and tag names that fit in an index key:
// fields of a key are separated by NUL, so a name must not contain one.
func checkName(kind, name string) error {
	if name == "" || strings.IndexByte(name, 0) >= 0 {
		return fmt.Errorf("%s %q: %w", kind, name, ErrInvalidName)
	}
	return nil
}

// blobPath is where the blob d lives: fanned out by the first two hex digits
// so no directory grows too large. d must have passed checkDigest.
func blobPath(blobRoot string, d digest.Digest) string {
	hex := d.Encoded()
	return filepath.Join(blobRoot, string(d.Algorithm()), hex[:2], hex)
}
