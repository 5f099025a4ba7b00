package ociserver

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"

	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// maxPage caps one page of a tag list or the catalog, whatever n asks for.
const maxPage = 1000

type tagList struct {
	Name string   `json:"name"`
	Tags []string `json:"tags"`
}

type catalog struct {
	Repositories []string `json:"repositories"`
}

func (s *Server) getTags(w http.ResponseWriter, r *http.Request, req Request) error {
	tags, err := s.backend.Tags(r.Context(), req.Repo())
	if err != nil {
		return err
	}
	return writePage(w, r, tags, func(page []string) any { return tagList{Name: req.Name, Tags: page} })
}

func (s *Server) getCatalog(w http.ResponseWriter, r *http.Request, _ Request) error {
	names, err := s.backend.Catalog(r.Context())
	if err != nil {
		return err
	}
	return writePage(w, r, names, func(page []string) any { return catalog{Repositories: page} })
}

// writePage answers with one page of names, sorted and without
// duplicates, in body's shape: from after ?last=, at most ?n= of them,
// with a Link to the next page when there are more.
func writePage(w http.ResponseWriter, r *http.Request, names []string, body func(page []string) any) error {
	names = slices.Clone(names)
	slices.Sort(names)
	names = slices.Compact(names)
	q := r.URL.Query()
	page, more := pageOf(names, q.Get("last"), q.Get("n"))
	if more {
		w.Header().Set("Link", nextLink(r.URL, len(page), page[len(page)-1]))
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

// nextLink is the RFC 5988 link to the page after last, keeping
// containerd's ns parameter so that the next page goes to the same registry.
func nextLink(u *url.URL, n int, last string) string {
	q := url.Values{"n": {strconv.Itoa(n)}, "last": {last}}
	if ns := u.Query().Get("ns"); ns != "" {
		q.Set("ns", ns)
	}
	next := url.URL{Path: u.Path, RawQuery: q.Encode()}
	return `<` + next.String() + `>; rel="next"`
}

// pageOf returns the names after last, at most n (or maxPage) of them,
// and whether more follow.
func pageOf(sorted []string, last, nParam string) ([]string, bool) {
	if last != "" {
		i, _ := slices.BinarySearch(sorted, last)
		for i < len(sorted) && sorted[i] <= last {
			i++
		}
		sorted = sorted[i:]
	}
	n := maxPage
	if v, err := strconv.Atoi(nParam); err == nil && v >= 0 && v < n {
		n = v
	}
	if len(sorted) <= n {
		return sorted, false
	}
	return sorted[:n], n > 0
}

func (s *Server) getReferrers(w http.ResponseWriter, r *http.Request, req Request) error {
	descs, err := s.backend.Referrers(r.Context(), req.Repo(), req.Digest)
	if err != nil {
		return err
	}
	if artifactType := r.URL.Query().Get("artifactType"); artifactType != "" {
		descs = slices.DeleteFunc(slices.Clone(descs), func(d ocispec.Descriptor) bool { return d.ArtifactType != artifactType })
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	body, err := ReferrersIndex(descs)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", ocispec.MediaTypeImageIndex)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if r.Method == http.MethodHead {
		return nil
	}
	_, err = w.Write(body)
	return err
}

// ReferrersIndex encodes descs as the image index the referrers API answers with.
func ReferrersIndex(descs []ocispec.Descriptor) ([]byte, error) {
	if descs == nil {
		descs = []ocispec.Descriptor{}
	}
	return json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex, Manifests: descs})
}

// WriteJSON answers with v as JSON.
func WriteJSON(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if r.Method == http.MethodHead {
		return nil
	}
	_, err = w.Write(body)
	return err
}
