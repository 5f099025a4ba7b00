package ociserver

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// Kind says which endpoint of the distribution API a request addresses.
type Kind int

const (
	KindBase Kind = iota + 1
	KindManifest
	KindBlob
	KindBlobUpload
	KindTags
	KindReferrers
	KindCatalog
)

var kindNames = map[Kind]string{
	KindBase:       "base",
	KindManifest:   "manifest",
	KindBlob:       "blob",
	KindBlobUpload: "upload",
	KindTags:       "tags",
	KindReferrers:  "referrers",
	KindCatalog:    "catalog",
}

func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return "unknown"
}

// Request is a parsed /v2/ request. Exactly the fields that its kind uses are set.
type Request struct {
	Kind Kind
	// Name is the repository as the client sent it, before routing.
	Name string
	// Tag is set for manifest requests by tag.
	Tag string
	// Digest is set for manifest requests by digest, blob and referrers requests.
	Digest digest.Digest
	// UploadID is the session of a blob upload; empty when starting one.
	UploadID string
	// NS is containerd's ?ns= parameter: the registry the client meant.
	NS string
}

// Repo is the repository the request addresses, as the client named it.
func (r Request) Repo() Repo { return Repo{Name: r.Name, NS: r.NS} }

// Reference is the tag or, when set, the digest a manifest request names.
func (r Request) Reference() string {
	if r.Digest != "" {
		return r.Digest.String()
	}
	return r.Tag
}

// ParseRequest parses the path of a /v2/ request. It is a pure function:
// it touches neither the network nor the disk, so every name, tag and digest
// it returns is validated before anything is built from it.
func ParseRequest(u *url.URL) (Request, error) {
	// Work on the escaped path: names, tags and digests never contain '%',
	// so any escape is an attempt to smuggle '/' or '.' past validation.
	p := u.EscapedPath()
	if strings.Contains(p, "%") {
		return Request{}, NewError(CodeNameInvalid, "escaped characters are not allowed in the path")
	}
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		if p == "/v2" {
			return Request{Kind: KindBase}, nil
		}
		return Request{}, NewError(CodeNameUnknown, "not a registry API path")
	}
	if rest == "" {
		return Request{Kind: KindBase}, nil
	}
	if rest == "_catalog" {
		return Request{Kind: KindCatalog}, nil
	}
	req, err := parseRepoPath(strings.Split(rest, "/"))
	if err != nil {
		return Request{}, err
	}
	req.NS = u.Query().Get("ns")
	return req, nil
}

// parseRepoPath splits "<name>/<endpoint...>" on the endpoint keywords from the end,
// because repository names contain '/' themselves.
func parseRepoPath(parts []string) (Request, error) {
	n := len(parts)
	var req Request
	var nameParts []string
	switch {
	case n >= 4 && parts[n-3] == "blobs" && parts[n-2] == "uploads":
		req = Request{Kind: KindBlobUpload, UploadID: parts[n-1]}
		nameParts = parts[:n-3]
	case n >= 3 && parts[n-2] == "manifests":
		ref := parts[n-1]
		if strings.Contains(ref, ":") {
			d, err := ParseDigest(ref)
			if err != nil {
				return Request{}, err
			}
			req = Request{Kind: KindManifest, Digest: d}
		} else {
			if !ValidTag(ref) {
				return Request{}, NewError(CodeTagInvalid, "invalid tag %q", Truncate(ref))
			}
			req = Request{Kind: KindManifest, Tag: ref}
		}
		nameParts = parts[:n-2]
	case n >= 3 && parts[n-2] == "blobs":
		d, err := ParseDigest(parts[n-1])
		if err != nil {
			return Request{}, err
		}
		req = Request{Kind: KindBlob, Digest: d}
		nameParts = parts[:n-2]
	case n >= 3 && parts[n-2] == "tags" && parts[n-1] == "list":
		req = Request{Kind: KindTags}
		nameParts = parts[:n-2]
	case n >= 3 && parts[n-2] == "referrers":
		d, err := ParseDigest(parts[n-1])
		if err != nil {
			return Request{}, err
		}
		req = Request{Kind: KindReferrers, Digest: d}
		nameParts = parts[:n-2]
	default:
		return Request{}, NewError(CodeNameUnknown, "unknown registry API endpoint")
	}
	req.Name = strings.Join(nameParts, "/")
	if _, err := reference.WithName(req.Name); err != nil || req.Name == "" {
		return Request{}, NewError(CodeNameInvalid, "invalid repository name %q", Truncate(req.Name))
	}
	return req, nil
}

// ParseDigest accepts only sha256 and sha512 digests, the algorithms of the
// distribution spec, in lower-case hex of the right length. Anything else
// could name a path outside the store.
func ParseDigest(s string) (digest.Digest, error) {
	d, err := digest.Parse(s)
	unsupported := errors.Is(err, digest.ErrDigestUnsupported) ||
		err == nil && d.Algorithm() != digest.SHA256 && d.Algorithm() != digest.SHA512
	switch {
	case unsupported:
		alg, _, _ := strings.Cut(s, ":")
		return "", NewError(CodeDigestInvalid, "unsupported digest algorithm %q: only sha256 and sha512 are supported", Truncate(alg))
	case err != nil:
		return "", NewError(CodeDigestInvalid, "invalid digest %q", Truncate(s))
	}
	return d, nil
}

func ValidTag(tag string) bool {
	_, err := reference.WithTag(placeholderName, tag)
	return err == nil
}

// placeholderName only lets reference.WithTag validate a tag on its own.
var placeholderName, _ = reference.WithName("placeholder")

// Truncate keeps hostile input from flooding error messages and logs.
func Truncate(s string) string {
	const limit = 80
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "..."
}

// IsReadMethod reports whether a method only reads.
func IsReadMethod(method string) bool {
	return method == http.MethodGet || method == http.MethodHead
}
