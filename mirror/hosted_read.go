package mirror

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Cache results of content served from a hosted repository.
const (
	resultHosted = "hosted"
	sourceHosted = "hosted"
)

// serveHostedRead serves a manifest or blob from the hosted repository and
// reports whether it had it; when it did not, the pull goes upstream.
func (m *Mirror) serveHostedRead(w http.ResponseWriter, r *http.Request, hr hostedRequest) (bool, error) {
	var err error
	switch hr.kind {
	case kindManifest:
		err = m.serveHostedManifest(w, r, hr)
	case kindBlob:
		err = m.serveHostedBlob(w, r, hr)
	default:
		return false, nil
	}
	if hostedNotFound(err) {
		return false, nil
	}
	if err == nil {
		noteResult(r.Context(), resultHosted)
	}
	return true, err
}

func (m *Mirror) serveHostedManifest(w http.ResponseWriter, r *http.Request, hr hostedRequest) error {
	ctx := r.Context()
	store := m.hosted.store
	d := hr.digest
	if d == "" {
		var err error
		if d, err = store.Tag(ctx, hr.hostedName, hr.tag); err != nil {
			return err
		}
	}
	mediaType, data, err := store.Manifest(ctx, hr.hostedName, d)
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", mediaType)
	h.Set("Docker-Content-Digest", d.String())
	h.Set("Content-Length", strconv.Itoa(len(data)))
	h.Set("ETag", `"`+d.String()+`"`)
	if r.Method == http.MethodHead {
		return nil
	}
	_, err = w.Write(data)
	return err
}

func (m *Mirror) serveHostedBlob(w http.ResponseWriter, r *http.Request, hr hostedRequest) error {
	return m.serveBlobBody(w, r, hr.digest, func(ctx context.Context, offset int64) (blobBody, error) {
		rc, size, err := m.hosted.store.OpenBlob(ctx, hr.hostedName, hr.digest, offset)
		return blobBody{rc: rc, offset: offset, size: size, source: sourceHosted}, err
	})
}

// serveHostedTags lists a hosted repository's tags; a repository without
// any is unknown.
func (h *hostedRepos) serveHostedTags(w http.ResponseWriter, r *http.Request, hr hostedRequest) error {
	tags, err := h.store.Tags(r.Context(), hr.hostedName)
	if err != nil {
		return fmt.Errorf("listing hosted tags of %s: %w", hr.hostedName, err)
	}
	if len(tags) == 0 {
		return newError(codeNameUnknown, "the hosted repository %s has no tags", truncate(hr.hostedName))
	}
	return writeTagPage(w, r, hr.name, tags)
}

// serveMergedTags lists a hosted repository's tags together with its
// upstream namesake's, as a group repository does. An upstream that fails
// does not hide the hosted tags: they are listed alone, with a warning.
func (m *Mirror) serveMergedTags(w http.ResponseWriter, r *http.Request, hr hostedRequest) error {
	ctx := r.Context()
	tags, err := m.hosted.store.Tags(ctx, hr.hostedName)
	if err != nil {
		return fmt.Errorf("listing hosted tags of %s: %w", hr.hostedName, err)
	}
	upstreamTags, err := m.upstreamTags(r, hr.request)
	switch {
	case err == nil:
		tags = append(tags, upstreamTags...)
	case len(tags) == 0:
		return hostedMiss(err, hr)
	case upstreamStatus(err) != http.StatusNotFound:
		m.log.WarnContext(ctx, "listing hosted tags without the upstream's", "repository", hr.hostedName, "error", err)
		w.Header().Set("Warning", `199 - "upstream tags unavailable; listing hosted tags only"`)
	}
	slices.Sort(tags)
	return writeTagPage(w, r, hr.name, slices.Compact(tags))
}

// upstreamTags lists the tags of the repository's upstream namesake.
func (m *Mirror) upstreamTags(r *http.Request, req request) ([]string, error) {
	rem, t, err := m.remoteFor(r.Context(), req)
	if err != nil {
		return nil, notFoundOrErr(err, kindTags)
	}
	if err := m.chargeMiss(r.Context()); err != nil {
		return nil, err
	}
	tags, err := rem.Upstream.ListTags(r.Context(), t.path, func() error { return m.chargeMiss(r.Context()) })
	if err != nil {
		return nil, fromUpstream(err, rem.Host, kindTags)
	}
	return tags, nil
}

// writeTagPage answers a tag listing with the page of sorted tags that n and
// last ask for.
func writeTagPage(w http.ResponseWriter, r *http.Request, name string, sorted []string) error {
	return writePage(w, r, sorted, func(page []string) any { return tagList{Name: name, Tags: page} })
}

// writePage answers a listing (tags, catalog) with the page of sorted names
// that n and last ask for; body puts the page in the listing's JSON shape.
func writePage(w http.ResponseWriter, r *http.Request, sorted []string, body func(page []string) any) error {
	q := r.URL.Query()
	page, more := pageTags(sorted, q.Get("last"), q.Get("n"))
	if more {
		w.Header().Set("Link", nextLink(r.URL.Path, len(page), page[len(page)-1]))
	}
	w.Header().Set("Content-Type", "application/json")
	if r.Method == http.MethodHead {
		return nil
	}
	if page == nil {
		page = []string{}
	}
	return json.NewEncoder(w).Encode(body(page))
}

func nextLink(path string, n int, last string) string {
	q := url.Values{"n": {strconv.Itoa(n)}, "last": {last}}
	return `<` + path + "?" + q.Encode() + `>; rel="next"`
}

// serveHostedReferrers answers the referrers API from the hosted repository.
func (h *hostedRepos) serveHostedReferrers(w http.ResponseWriter, r *http.Request, hr hostedRequest) error {
	descs, err := h.store.Referrers(r.Context(), hr.hostedName, hr.digest)
	if err != nil {
		return fmt.Errorf("listing referrers of %s in %s: %w", hr.digest, hr.hostedName, err)
	}
	return writeReferrers(w, r, descs)
}

// serveMergedReferrers lists a subject's referrers in a hosted repository
// that falls through together with those of its upstream namesake, as
// serveMergedTags does for tags: pulls of the name may be served from
// either. An upstream that fails does not hide the hosted referrers.
func (m *Mirror) serveMergedReferrers(w http.ResponseWriter, r *http.Request, hr hostedRequest) error {
	ctx := r.Context()
	descs, err := m.hosted.store.Referrers(ctx, hr.hostedName, hr.digest)
	if err != nil {
		return fmt.Errorf("listing referrers of %s in %s: %w", hr.digest, hr.hostedName, err)
	}
	upstreamDescs, err := m.upstreamReferrers(w, r, hr.request)
	switch {
	case err == nil:
		for _, d := range upstreamDescs {
			if !slices.ContainsFunc(descs, func(h ocispec.Descriptor) bool { return h.Digest == d.Digest }) {
				descs = append(descs, d)
			}
		}
	case deniesName(err):
		// The upstream does not know the name or refuses it: the hosted
		// repository answers alone, as for a name that does not fall through.
	case len(descs) == 0:
		return err
	default:
		m.log.WarnContext(ctx, "listing hosted referrers without the upstream's", "repository", hr.hostedName, "error", err)
		w.Header().Set("Warning", `199 - "upstream referrers unavailable; listing hosted referrers only"`)
	}
	return writeReferrers(w, r, descs)
}

// upstreamReferrers lists a subject's referrers in the repository's
// upstream namesake.
func (m *Mirror) upstreamReferrers(w http.ResponseWriter, r *http.Request, req request) ([]ocispec.Descriptor, error) {
	rem, t, err := m.remoteFor(r.Context(), req)
	if err != nil {
		return nil, err
	}
	return m.referrersOf(r.Context(), w, rem, t, req.digest)
}

var specsVersioned = specs.Versioned{SchemaVersion: 2}

// catalog is the body of a _catalog answer.
type catalog struct {
	Repositories []string `json:"repositories"`
}

// serveCatalog lists the hosted repositories the client may pull, paged
// like tags; the upstreams' repositories are not listed.
func (h *hostedRepos) serveCatalog(w http.ResponseWriter, r *http.Request) error {
	if !isReadMethod(r.Method) {
		return newError(codeUnsupported, "%s is not supported on the catalog", r.Method)
	}
	names, err := h.store.Repositories(r.Context())
	if err != nil {
		return err
	}
	who := clientOf(r.Context())
	names = slices.DeleteFunc(names, func(name string) bool { return !h.allowed(who, name, ActionPull) })
	return writePage(w, r, names, func(page []string) any { return catalog{Repositories: page} })
}

// readAll reads at most limit bytes of body and reports whether there were more.
func readAll(body io.Reader, limit int64) (data []byte, tooBig bool, err error) {
	data, err = io.ReadAll(io.LimitReader(body, limit+1))
	if int64(len(data)) > limit {
		return nil, true, err
	}
	return data, false, err
}

// blobLocation and manifestLocation are where pushed content is read back.
func blobLocation(name string, d digest.Digest) string {
	return "/v2/" + name + "/blobs/" + d.String()
}

func manifestLocation(name string, d digest.Digest) string {
	return "/v2/" + name + "/manifests/" + d.String()
}
