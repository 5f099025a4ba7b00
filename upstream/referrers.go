package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Bounds on a referrers listing. The mirror keeps a listing like a
// manifest, so all its pages together get a manifest's cap.
const (
	maxReferrerPages = 100
	// MaxReferrersSize caps the bytes of all pages of one listing.
	MaxReferrersSize = MaxManifestSize
)

// ErrReferrersTooLarge: a referrers listing exceeds MaxReferrersSize or
// its page bound.
var ErrReferrersTooLarge = errors.New("referrers list too large")

var referrersHeader = http.Header{"Accept": {ocispec.MediaTypeImageIndex}}

// Referrers returns the descriptors of the manifests in repo whose subject
// is subject (signatures, SBOMs, attestations): from the registry's
// referrers API (OCI 1.1), following its pages, or, when the registry has
// no such API (it answers 404), from the tag schema's fallback, the index
// tagged "<algorithm>-<hex>" (FallbackTag). A subject with neither has no
// referrers: an empty list, not an error. Every descriptor names a valid
// digest and a media type; a listing of more than MaxReferrersSize bytes
// fails with ErrReferrersTooLarge. nextPage is as for ListTags. Each page
// is bounded by Config.Timeout.
func (c *Client) Referrers(ctx context.Context, repo string, subject digest.Digest, nextPage func() error) ([]ocispec.Descriptor, error) {
	o := opError{host: c.host, op: "list referrers", repo: repo, ref: subject.String(), notFoundCode: "NAME_UNKNOWN"}
	if err := validRepo(repo); err != nil {
		return nil, o.invalid(err)
	}
	if err := subject.Validate(); err != nil {
		return nil, o.invalid(err)
	}
	var descs []ocispec.Descriptor
	var size int
	next := c.endpoint(repo, "/referrers/"+subject.String())
	for page := 0; next != ""; page++ {
		if page == maxReferrerPages {
			return nil, tooManyReferrers(o, fmt.Sprintf("more than %d pages of referrers", maxReferrerPages))
		}
		if page > 0 && nextPage != nil {
			if err := nextPage(); err != nil {
				return nil, err
			}
		}
		pageDescs, pageSize, link, err := c.referrersPageWithRetries(ctx, o, next)
		if page == 0 && statusOf(err) == http.StatusNotFound {
			return c.fallbackReferrers(ctx, repo, subject)
		}
		if err != nil {
			return nil, err
		}
		descs = append(descs, pageDescs...)
		if size += pageSize; size > MaxReferrersSize {
			return nil, tooManyReferrers(o, fmt.Sprintf("referrers list exceeds %d bytes", MaxReferrersSize))
		}
		if next, err = c.nextPage(next, link); err != nil {
			return nil, o.badContent(http.StatusOK, "UNKNOWN", false, err, err.Error())
		}
	}
	return descs, nil
}

// FallbackTag is the tag under which the distribution spec's tag schema
// keeps the referrers index of subject, for registries without the
// referrers API: "<algorithm>-<hex>", each part truncated as the spec says.
func FallbackTag(subject digest.Digest) string {
	alg, hex := string(subject.Algorithm()), subject.Encoded()
	return alg[:min(len(alg), 32)] + "-" + hex[:min(len(hex), 64)]
}

func tooManyReferrers(o opError, msg string) *Error {
	return o.badContent(http.StatusOK, "UNKNOWN", false, ErrReferrersTooLarge, msg)
}

// referrersPageWithRetries fetches one page of a referrers listing: its
// descriptors, its size in bytes and its Link header.
func (c *Client) referrersPageWithRetries(ctx context.Context, o opError, target string) (descs []ocispec.Descriptor, size int, link string, err error) {
	tooBig := func() *Error {
		return tooManyReferrers(o, fmt.Sprintf("referrers page exceeds %d bytes", MaxReferrersSize))
	}
	page, err := c.pageWithRetries(ctx, o, target, referrersHeader, MaxReferrersSize, tooBig)
	if err != nil {
		return nil, 0, "", err
	}
	descs, err = referrerDescriptors(o, page.status, page.body)
	return descs, len(page.body), page.link, err
}

// fallbackReferrers reads the tag schema's referrers index of subject; a
// missing tag means no referrers.
func (c *Client) fallbackReferrers(ctx context.Context, repo string, subject digest.Digest) ([]ocispec.Descriptor, error) {
	tag := FallbackTag(subject)
	_, data, err := c.GetManifest(ctx, repo, tag)
	if statusOf(err) == http.StatusNotFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	o := opError{host: c.host, op: "get manifest", repo: repo, ref: tag}
	return referrerDescriptors(o, http.StatusOK, data)
}

// referrerDescriptors parses an index of referrers and checks each entry:
// nothing the mirror passes on may name an invalid digest.
func referrerDescriptors(o opError, status int, body []byte) ([]ocispec.Descriptor, error) {
	var idx ocispec.Index
	if err := json.Unmarshal(body, &idx); err != nil {
		return nil, o.badContent(status, "UNKNOWN", false, err, "referrers list is not a valid image index")
	}
	for i, d := range idx.Manifests {
		if err := d.Digest.Validate(); err != nil || d.MediaType == "" || d.Size < 0 {
			msg := fmt.Sprintf("referrers list entry %d is not a valid descriptor", i)
			return nil, o.badContent(status, "UNKNOWN", false, errors.New(msg), msg)
		}
	}
	return idx.Manifests, nil
}
