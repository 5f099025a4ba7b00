package mirror

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
)

// maxTagsPage caps the n parameter of a tag listing.
const maxTagsPage = 1000

type tagList struct {
	Name string   `json:"name"`
	Tags []string `json:"tags"`
}

// serveTags proxies a tag listing and pages it with n and last, as the
// distribution spec describes.
func (m *Mirror) serveTags(w http.ResponseWriter, r *http.Request, req request) error {
	ctx := r.Context()
	rem, t, err := m.remoteFor(ctx, req)
	if err != nil {
		return err
	}
	if err := m.chargeMiss(ctx); err != nil {
		return err
	}
	tags, err := rem.Upstream.ListTags(ctx, t.path, func() error { return m.chargeMiss(ctx) })
	if err != nil {
		cached, ok := m.cachedTagsFallback(ctx, t, err)
		if !ok {
			return fromUpstream(err, rem.Host, kindTags)
		}
		m.log.WarnContext(ctx, "listing cached tags: the upstream is unreachable", "repository", t.cacheKey(), "error", err)
		w.Header().Set("Warning", `110 - "upstream unreachable; listing the cached tags"`)
		tags = cached
	}
	slices.Sort(tags)
	page, more := pageTags(tags, r.URL.Query().Get("last"), r.URL.Query().Get("n"))
	if more {
		w.Header().Set("Link", tagsNextLink(r.URL, len(page), page[len(page)-1]))
	}
	w.Header().Set("Content-Type", "application/json")
	if r.Method == http.MethodHead {
		return nil
	}
	if page == nil {
		page = []string{}
	}
	return json.NewEncoder(w).Encode(tagList{Name: req.name, Tags: page})
}

// tagsNextLink is the Link header to the page after last. Tags come from
// the upstream and may hold anything ('>', ';', '&', line breaks), so the
// URL is built escaped: nothing in a tag can end the link, add parameters
// to it or to the header. The ns parameter stays, so the next page comes
// from the same registry.
func tagsNextLink(u *url.URL, n int, last string) string {
	q := url.Values{"n": {strconv.Itoa(n)}, "last": {last}}
	if ns := u.Query().Get("ns"); ns != "" {
		q.Set("ns", ns)
	}
	next := url.URL{Path: u.Path, RawQuery: q.Encode()}
	return `<` + next.String() + `>; rel="next"`
}

// pageTags returns the sorted tags after last, at most n of them (clamped to
// maxTagsPage), and whether more follow.
func pageTags(sorted []string, last, nParam string) ([]string, bool) {
	if last != "" {
		i, _ := slices.BinarySearch(sorted, last)
		for i < len(sorted) && sorted[i] <= last {
			i++
		}
		sorted = sorted[i:]
	}
	n := maxTagsPage
	if v, err := strconv.Atoi(nParam); err == nil && v >= 0 && v < n {
		n = v
	}
	if len(sorted) <= n {
		return sorted, false
	}
	return sorted[:n], n > 0
}
