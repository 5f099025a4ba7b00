package mirror

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// kind says which endpoint of the distribution API a request addresses.
type kind int

const (
	kindBase kind = iota + 1
	kindManifest
	kindBlob
	kindBlobUpload
	kindTags
	kindReferrers
	kindCatalog
)

var kindNames = map[kind]string{
	kindBase:       "base",
	kindManifest:   "manifest",
	kindBlob:       "blob",
	kindBlobUpload: "upload",
	kindTags:       "tags",
	kindReferrers:  "referrers",
	kindCatalog:    "catalog",
}

func (k kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return "unknown"
}

// request is a parsed /v2/ request. Exactly the fields that its kind uses are set.
type request struct {
	kind kind
	// name is the repository as the client sent it, before routing.
	name string
	// tag is set for manifest requests by tag.
	tag string
	// digest is set for manifest requests by digest, blob and referrers requests.
	digest digest.Digest
	// uploadID is the session of a blob upload; empty when starting one.
	uploadID string
	// ns is containerd's ?ns= parameter: the registry the client meant.
	ns string
}

// parseRequest parses the path of a /v2/ request. It is a pure function:
// it touches neither the network nor the disk, so every name, tag and digest
// it returns is validated before anything is built from it.
func parseRequest(u *url.URL) (request, error) {
	// Work on the escaped path: names, tags and digests never contain '%',
	// so any escape is an attempt to smuggle '/' or '.' past validation.
	p := u.EscapedPath()
	if strings.Contains(p, "%") {
		return request{}, newError(codeNameInvalid, "escaped characters are not allowed in the path")
	}
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		if p == "/v2" {
			return request{kind: kindBase}, nil
		}
		return request{}, newError(codeNameUnknown, "not a registry API path")
	}
	if rest == "" {
		return request{kind: kindBase}, nil
	}
	if rest == "_catalog" {
		return request{kind: kindCatalog}, nil
	}
	req, err := parseRepoPath(strings.Split(rest, "/"))
	if err != nil {
		return request{}, err
	}
	req.ns = u.Query().Get("ns")
	return req, nil
}

// parseRepoPath splits "<name>/<endpoint...>" on the endpoint keywords from the end,
// because repository names contain '/' themselves.
func parseRepoPath(parts []string) (request, error) {
	n := len(parts)
	var req request
	var nameParts []string
	switch {
	case n >= 4 && parts[n-3] == "blobs" && parts[n-2] == "uploads":
		req = request{kind: kindBlobUpload, uploadID: parts[n-1]}
		nameParts = parts[:n-3]
	case n >= 3 && parts[n-2] == "manifests":
		ref := parts[n-1]
		if strings.Contains(ref, ":") {
			d, err := parseDigest(ref)
			if err != nil {
				return request{}, err
			}
			req = request{kind: kindManifest, digest: d}
		} else {
			if !validTag(ref) {
				return request{}, newError(codeTagInvalid, "invalid tag %q", truncate(ref))
			}
			req = request{kind: kindManifest, tag: ref}
		}
		nameParts = parts[:n-2]
	case n >= 3 && parts[n-2] == "blobs":
		d, err := parseDigest(parts[n-1])
		if err != nil {
			return request{}, err
		}
		req = request{kind: kindBlob, digest: d}
		nameParts = parts[:n-2]
	case n >= 3 && parts[n-2] == "tags" && parts[n-1] == "list":
		req = request{kind: kindTags}
		nameParts = parts[:n-2]
	case n >= 3 && parts[n-2] == "referrers":
		d, err := parseDigest(parts[n-1])
		if err != nil {
			return request{}, err
		}
		req = request{kind: kindReferrers, digest: d}
		nameParts = parts[:n-2]
	default:
		return request{}, newError(codeNameUnknown, "unknown registry API endpoint")
	}
	req.name = strings.Join(nameParts, "/")
	if _, err := reference.WithName(req.name); err != nil || req.name == "" {
		return request{}, newError(codeNameInvalid, "invalid repository name %q", truncate(req.name))
	}
	return req, nil
}

// parseDigest accepts only sha256 and sha512 digests, the algorithms of the
// distribution spec, in lower-case hex of the right length. Anything else
// could name a path outside the store.
func parseDigest(s string) (digest.Digest, error) {
	d, err := digest.Parse(s)
	unsupported := errors.Is(err, digest.ErrDigestUnsupported) ||
		err == nil && d.Algorithm() != digest.SHA256 && d.Algorithm() != digest.SHA512
	switch {
	case unsupported:
		alg, _, _ := strings.Cut(s, ":")
		return "", newError(codeDigestInvalid, "unsupported digest algorithm %q: only sha256 and sha512 are supported", truncate(alg))
	case err != nil:
		return "", newError(codeDigestInvalid, "invalid digest %q", truncate(s))
	}
	return d, nil
}

func validTag(tag string) bool {
	_, err := reference.WithTag(placeholderName, tag)
	return err == nil
}

// placeholderName only lets reference.WithTag validate a tag on its own.
var placeholderName, _ = reference.WithName("placeholder")

// truncate keeps hostile input from flooding error messages and logs.
func truncate(s string) string {
	const limit = 80
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "..."
}

// isReadMethod reports whether a method only reads.
func isReadMethod(method string) bool {
	return method == http.MethodGet || method == http.MethodHead
}
