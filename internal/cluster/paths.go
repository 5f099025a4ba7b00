package cluster

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// ErrRefused is returned, wrapped, for a request that the peer channel
// does not carry: only GET and HEAD of /v2/<name>/blobs/<digest> and
// /v2/<name>/manifests/<reference>, only to a member other than this
// replica. Forward returns it before any network I/O.
var ErrRefused = errors.New("not a request for a peer")

// checkForwardable accepts GET and HEAD of a blob or a manifest and
// nothing else, so that a peer signature never opens another endpoint of
// the owner (uploads, the catalog, the admin pages) to a replica's client.
func checkForwardable(method string, u *url.URL) error {
	if method != http.MethodGet && method != http.MethodHead {
		return fmt.Errorf("%w: method %s", ErrRefused, method)
	}
	if !registryReadPath(u.EscapedPath()) {
		return fmt.Errorf("%w: path is not a blob or manifest", ErrRefused)
	}
	return nil
}

// registryReadPath reports whether p is /v2/<name>/blobs/<digest> or
// /v2/<name>/manifests/<tag or digest> with a valid repository name. It
// works on the escaped path and refuses any escape, which names, tags and
// digests never need, so that no '/' or '.' is smuggled past it.
func registryReadPath(p string) bool {
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok || strings.Contains(rest, "%") {
		return false
	}
	name, ref, ok := cutEndpoint(rest, "/blobs/")
	if ok {
		return validName(name) && validDigest(ref)
	}
	name, ref, ok = cutEndpoint(rest, "/manifests/")
	if !ok || !validName(name) {
		return false
	}
	if strings.Contains(ref, ":") {
		return validDigest(ref)
	}
	_, err := reference.WithTag(placeholderName, ref)
	return err == nil
}

// cutEndpoint splits "<name><sep><ref>" at the last sep, because names
// hold '/' and may even hold "blobs" as a component; ref holds no '/'.
func cutEndpoint(s, sep string) (name, ref string, ok bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return "", "", false
	}
	name, ref = s[:i], s[i+len(sep):]
	return name, ref, ref != "" && !strings.Contains(ref, "/")
}

func validName(name string) bool {
	_, err := reference.WithName(name)
	return err == nil
}

// validDigest accepts the digests of the distribution spec: sha256 and
// sha512 in lower-case hex of the right length.
func validDigest(s string) bool {
	d, err := digest.Parse(s)
	return err == nil && (d.Algorithm() == digest.SHA256 || d.Algorithm() == digest.SHA512)
}

// placeholderName only lets reference.WithTag validate a tag on its own.
var placeholderName, _ = reference.WithName("placeholder")
