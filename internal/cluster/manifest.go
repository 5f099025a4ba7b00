package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/opencontainers/go-digest"
)

// MaxManifestSize caps a manifest read from a peer: distribution's limit,
// which the owner applied to the upstream's answer too.
const MaxManifestSize = 4 << 20

var (
	// ErrStaleAnswer is returned, wrapped, when the owner answers a tag
	// from a copy it could not revalidate (Warning: 110): the caller asks
	// the upstream itself rather than record the tag as confirmed now.
	ErrStaleAnswer = errors.New("peer answered with a stale copy")
	// ErrBadManifestAnswer is returned, wrapped, when the owner's answer
	// lacks a valid Docker-Content-Digest or exceeds MaxManifestSize.
	ErrBadManifestAnswer = errors.New("peer sent an unusable manifest answer")
)

// manifestAccept is every manifest type a registry client accepts, so
// that the owner sends what it holds, whatever its type.
var manifestAccept = strings.Join([]string{
	"application/vnd.docker.distribution.manifest.v2+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
	"application/vnd.oci.image.manifest.v1+json",
	"application/vnd.oci.image.index.v1+json",
}, ", ")

// HeadManifest asks owner where manifest ref (a tag or a digest) of
// repository name on registry ns points, with a HEAD of
// /v2/<name>/manifests/<ref>?ns=<ns>: the owner answers from its cache
// while the tag is fresh there. It returns the owner's
// Docker-Content-Digest. Besides Forward's errors it returns
// ErrStaleAnswer and ErrBadManifestAnswer, wrapped.
func (f *Forwarder) HeadManifest(ctx context.Context, owner Peer, ns, name, ref string) (digest.Digest, error) {
	resp, err := f.manifestRequest(ctx, http.MethodHead, owner, ns, name, ref)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	return answeredDigest(owner, resp)
}

// GetManifest reads manifest ref (a tag or a digest) of repository name
// on registry ns from owner, with a GET of
// /v2/<name>/manifests/<ref>?ns=<ns>, and returns its media type, its
// bytes and the digest the owner says they have. The caller verifies the
// digest. Besides Forward's errors it returns ErrStaleAnswer and
// ErrBadManifestAnswer, wrapped.
func (f *Forwarder) GetManifest(ctx context.Context, owner Peer, ns, name, ref string) (mediaType string, data []byte, d digest.Digest, err error) {
	resp, err := f.manifestRequest(ctx, http.MethodGet, owner, ns, name, ref)
	if err != nil {
		return "", nil, "", err
	}
	defer resp.Body.Close()
	if d, err = answeredDigest(owner, resp); err != nil {
		return "", nil, "", err
	}
	if resp.ContentLength > MaxManifestSize {
		return "", nil, "", fmt.Errorf("manifest %s from %s: %w: %d bytes", ref, owner, ErrBadManifestAnswer, resp.ContentLength)
	}
	data, err = io.ReadAll(io.LimitReader(resp.Body, MaxManifestSize+1))
	if err != nil {
		return "", nil, "", fmt.Errorf("manifest %s from %s: %w", ref, owner, err)
	}
	if len(data) > MaxManifestSize {
		return "", nil, "", fmt.Errorf("manifest %s from %s: %w: more than %d bytes", ref, owner, ErrBadManifestAnswer, MaxManifestSize)
	}
	return resp.Header.Get("Content-Type"), data, d, nil
}

// manifestRequest sends a signed method of manifest ref to owner and
// refuses an answer served stale.
func (f *Forwarder) manifestRequest(ctx context.Context, method string, owner Peer, ns, name, ref string) (*http.Response, error) {
	target := &url.URL{Path: "/v2/" + name + "/manifests/" + ref, RawQuery: url.Values{"ns": {ns}}.Encode()}
	req, err := http.NewRequestWithContext(ctx, method, target.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("manifest %s from %s: %w", ref, owner, err)
	}
	req.Header.Set("Accept", manifestAccept)
	resp, err := f.Forward(ctx, owner, req)
	if err != nil {
		return nil, err
	}
	if servedStale(resp.Header) {
		resp.Body.Close()
		return nil, fmt.Errorf("manifest %s from %s: %w", ref, owner, ErrStaleAnswer)
	}
	return resp, nil
}

// servedStale reports whether h carries the warning of a response served
// stale (RFC 7234 warn-code 110).
func servedStale(h http.Header) bool {
	for _, w := range h.Values("Warning") {
		if strings.HasPrefix(strings.TrimSpace(w), "110") {
			return true
		}
	}
	return false
}

func answeredDigest(owner Peer, resp *http.Response) (digest.Digest, error) {
	d, err := digest.Parse(resp.Header.Get("Docker-Content-Digest"))
	if err != nil {
		return "", fmt.Errorf("manifest from %s: %w: Docker-Content-Digest: %w", owner, ErrBadManifestAnswer, err)
	}
	return d, nil
}
