package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// MaxManifestSize caps manifest downloads, like distribution's 4 MiB limit.
const MaxManifestSize = 4 << 20

// Manifest media types a mirror must accept; Docker Hub picks the answer's
// type from this list (images are mostly Docker types, newer ones OCI).
const (
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
)

var manifestHeader = http.Header{"Accept": {strings.Join([]string{
	MediaTypeDockerManifest,
	MediaTypeDockerManifestList,
	ocispec.MediaTypeImageManifest,
	ocispec.MediaTypeImageIndex,
}, ", ")}}

// HeadManifest resolves a tag or digest to a descriptor with a HEAD, which
// Docker Hub does not count as a pull. If the registry leaves out the
// digest, type or size, it falls back to GetManifest and hashes the bytes.
// The whole call, fallback included, is bounded by Config.Timeout.
func (c *Client) HeadManifest(ctx context.Context, repo, reference string) (ocispec.Descriptor, error) {
	o, err := c.manifestOp("head manifest", repo, reference)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	var desc ocispec.Descriptor
	var complete bool
	err = c.retry(ctx, o, func(ctx context.Context) error {
		resp, err := c.send(ctx, o, http.MethodHead, c.endpoint(repo, "/manifests/"+reference), manifestHeader, http.StatusOK)
		if err != nil {
			return err
		}
		resp.Body.Close()
		desc, complete = descriptorFromHeaders(resp.Header)
		return nil
	})
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	if complete && (!isDigest(reference) || desc.Digest.String() == reference) {
		return desc, nil
	}
	mediaType, data, err := c.GetManifest(ctx, repo, reference)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	alg := digest.Canonical // what a tag is named by
	if d, err := digest.Parse(reference); err == nil {
		alg = d.Algorithm() // GetManifest verified data against it
	}
	return ocispec.Descriptor{MediaType: mediaType, Digest: alg.FromBytes(data), Size: int64(len(data))}, nil
}

// descriptorFromHeaders reads a manifest descriptor from HEAD headers;
// complete is false unless a supported digest, a media type and a size are
// all there.
func descriptorFromHeaders(h http.Header) (desc ocispec.Descriptor, complete bool) {
	d, err := digest.Parse(h.Get("Docker-Content-Digest"))
	if err != nil || !supportedDigest(d) {
		return desc, false
	}
	size, err := strconv.ParseInt(h.Get("Content-Length"), 10, 64)
	if err != nil || size < 0 {
		return desc, false
	}
	mediaType := specificMediaType(h.Get("Content-Type"))
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: size}, mediaType != ""
}

// GetManifest downloads a manifest of at most MaxManifestSize bytes and
// verifies it: against reference when that is a digest, else against the
// Docker-Content-Digest header when there is one. Only sha256 and sha512
// are accepted.
// A mismatch is a temporary *Error wrapping ErrDigestMismatch (a retry may
// get intact bytes); an oversized manifest wraps ErrManifestTooLarge.
// The call is bounded by Config.Timeout.
func (c *Client) GetManifest(ctx context.Context, repo, reference string) (mediaType string, data []byte, err error) {
	o, err := c.manifestOp("get manifest", repo, reference)
	if err != nil {
		return "", nil, err
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	err = c.retry(ctx, o, func(ctx context.Context) error {
		resp, err := c.send(ctx, o, http.MethodGet, c.endpoint(repo, "/manifests/"+reference), manifestHeader, http.StatusOK)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		data, err = readManifest(o, resp)
		if err != nil {
			return err
		}
		if err := verifyManifest(o, resp, reference, data); err != nil {
			return err
		}
		mediaType = manifestMediaType(resp.Header.Get("Content-Type"), data)
		return nil
	})
	if err != nil {
		return "", nil, err
	}
	return mediaType, data, nil
}

func readManifest(o opError, resp *http.Response) ([]byte, error) {
	tooLarge := func() error {
		return o.badContent(resp.StatusCode, "MANIFEST_INVALID", false, ErrManifestTooLarge,
			fmt.Sprintf("manifest exceeds %d bytes", MaxManifestSize))
	}
	if resp.ContentLength > MaxManifestSize {
		return nil, tooLarge()
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxManifestSize+1))
	if err != nil {
		return nil, o.fromErr(err)
	}
	if len(data) > MaxManifestSize {
		return nil, tooLarge()
	}
	return data, nil
}

// verifyManifest checks data against the digest the reference or the
// registry promised. A tag answered without a digest header cannot be checked.
func verifyManifest(o opError, resp *http.Response, reference string, data []byte) error {
	want := reference
	if !isDigest(reference) {
		want = resp.Header.Get("Docker-Content-Digest")
		if want == "" {
			return nil
		}
	}
	d, err := digest.Parse(want)
	if err != nil || !supportedDigest(d) {
		return o.badContent(resp.StatusCode, "DIGEST_INVALID", false, ErrUnsupportedDigest,
			fmt.Sprintf("cannot verify against %q: only sha256 and sha512 are supported", want))
	}
	if got := d.Algorithm().FromBytes(data); got != d {
		return o.badContent(resp.StatusCode, "DIGEST_INVALID", true, ErrDigestMismatch,
			fmt.Sprintf("manifest bytes hash to %s, want %s", got, d))
	}
	return nil
}

// manifestMediaType is the Content-Type when it names a manifest type,
// else the document's own mediaType field, else a guess from its shape.
func manifestMediaType(contentType string, data []byte) string {
	if mt := specificMediaType(contentType); mt != "" {
		return mt
	}
	var doc struct {
		MediaType string            `json:"mediaType"`
		Manifests []json.RawMessage `json:"manifests"`
	}
	if json.Unmarshal(data, &doc) == nil && doc.MediaType != "" {
		return doc.MediaType
	}
	if doc.Manifests != nil {
		return ocispec.MediaTypeImageIndex
	}
	return ocispec.MediaTypeImageManifest
}

// specificMediaType strips parameters from a Content-Type and drops the
// generic types some registries send, which say nothing about the manifest.
func specificMediaType(contentType string) string {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return ""
	}
	switch mt {
	case "application/json", "text/plain", "application/octet-stream":
		return ""
	}
	return mt
}

func (c *Client) manifestOp(op, repo, reference string) (opError, error) {
	o := opError{host: c.host, op: op, repo: repo, ref: reference, notFoundCode: "MANIFEST_UNKNOWN"}
	if err := validRepo(repo); err != nil {
		return o, o.invalid(err)
	}
	if err := validReference(reference); err != nil {
		return o, o.invalid(err)
	}
	return o, nil
}
