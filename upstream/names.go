package upstream

import (
	"fmt"
	"regexp"

	"github.com/opencontainers/go-digest"
)

// Repository and tag grammar of the OCI distribution spec. Names go into
// URL paths, so anything else is refused before a request is made.
var (
	repoPattern = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$`)
	tagPattern  = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
)

func validRepo(repo string) error {
	if len(repo) > 255 || !repoPattern.MatchString(repo) {
		return fmt.Errorf("invalid repository name %q", repo)
	}
	return nil
}

func validReference(reference string) error {
	if isDigest(reference) || tagPattern.MatchString(reference) {
		return nil
	}
	return fmt.Errorf("invalid tag or digest %q", reference)
}

// supportedDigest reports whether d, a valid digest, uses an algorithm of
// the distribution spec: sha256 or sha512.
func supportedDigest(d digest.Digest) bool {
	return d.Algorithm() == digest.SHA256 || d.Algorithm() == digest.SHA512
}

// isDigest reports whether a manifest reference is a digest rather than a tag.
func isDigest(reference string) bool {
	_, err := digest.Parse(reference)
	return err == nil
}

// invalid makes the error for a request refused before it was sent.
func (o opError) invalid(err error) *Error {
	return &Error{Host: o.host, Op: o.op, Repo: o.repo, Ref: o.ref, Code: "NAME_INVALID", Message: err.Error(), Err: err}
}
