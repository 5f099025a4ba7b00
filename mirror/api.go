package mirror

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/internal/ociserver"
)

// The read-only inventory API and Docker's v1 search. Both answer only
// with repositories the client may read (see inventory.go); a repository
// the client may not read is unknown, never forbidden, so that its
// existence stays hidden.

// Paths of the inventory endpoints.
const (
	apiReposPath = "/api/v1/repositories"
	searchPath   = "/v1/search"
	v1PingPath   = "/v1/_ping"
)

// serveInventoryAPI answers the repository API and the v1 search; it
// reports false for any other path.
func (m *Mirror) serveInventoryAPI(w http.ResponseWriter, r *http.Request) (bool, error) {
	p := r.URL.Path
	switch {
	case p == v1PingPath:
		return true, ociserver.WriteJSON(w, r, struct {
			Standalone bool `json:"standalone"`
		}{true})
	case p == searchPath:
		return true, m.serveSearch(w, r)
	case p == apiReposPath || strings.HasPrefix(p, apiReposPath+"/"):
		if !isReadMethod(r.Method) {
			return true, newError(ociserver.CodeUnsupported, "the repository API is read-only")
		}
		return true, m.serveRepoAPI(w, r, strings.TrimPrefix(strings.TrimPrefix(p, apiReposPath), "/"))
	}
	return false, nil
}

// serveRepoAPI dispatches "", "<name>/tags" and "<name>/manifests/<digest>".
func (m *Mirror) serveRepoAPI(w http.ResponseWriter, r *http.Request, rest string) error {
	if rest == "" {
		return m.serveRepositories(w, r)
	}
	if name, ok := strings.CutSuffix(rest, "/tags"); ok {
		return m.serveRepoTags(w, r, name)
	}
	if name, ref, ok := cutLast(rest, "/manifests/"); ok {
		d, err := parseDigest(ref)
		if err != nil {
			return err
		}
		return m.serveRepoManifest(w, r, name, d)
	}
	return newError(ociserver.CodeNameUnknown, "not an API path")
}

func cutLast(s, sep string) (before, after string, ok bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

// serveRepositories lists the repositories the client may read; q filters
// by a substring of the name.
func (m *Mirror) serveRepositories(w http.ResponseWriter, r *http.Request) error {
	snap, err := m.snapshot(r.Context())
	if err != nil {
		return err
	}
	return ociserver.WriteJSON(w, r, struct {
		Repositories []Repository `json:"repositories"`
	}{m.browser(r.Context()).Repositories(snap, r.URL.Query().Get("q"))})
}

// serveRepoTags lists a repository's tags with their images' sizes and platforms.
func (m *Mirror) serveRepoTags(w http.ResponseWriter, r *http.Request, name string) error {
	snap, err := m.snapshot(r.Context())
	if err != nil {
		return err
	}
	tags, err := m.browser(r.Context()).Tags(r.Context(), snap, name)
	if err != nil {
		return err
	}
	return ociserver.WriteJSON(w, r, tags)
}

// serveRepoManifest describes a manifest the repository holds: an index's
// platforms, an image's layers with their sizes.
func (m *Mirror) serveRepoManifest(w http.ResponseWriter, r *http.Request, name string, d digest.Digest) error {
	snap, err := m.snapshot(r.Context())
	if err != nil {
		return err
	}
	detail, err := m.browser(r.Context()).Manifest(r.Context(), snap, name, d)
	if err != nil {
		return err
	}
	return ociserver.WriteJSON(w, r, detail)
}

// searchResult is one repository in Docker's v1 search answer.
type searchResult struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	StarCount   int    `json:"star_count"`
	IsOfficial  bool   `json:"is_official"`
	IsAutomated bool   `json:"is_automated"`
}

// maxSearchResults caps n of a search, as Docker Hub does.
const maxSearchResults = 100

// serveSearch answers `docker search MIRROR/term`: the repositories the
// client may read whose name contains the term, in Docker's v1 shape.
func (m *Mirror) serveSearch(w http.ResponseWriter, r *http.Request) error {
	if !isReadMethod(r.Method) {
		return newError(ociserver.CodeUnsupported, "%s is not supported on the search", r.Method)
	}
	snap, err := m.snapshot(r.Context())
	if err != nil {
		return err
	}
	term := strings.ToLower(r.URL.Query().Get("q"))
	n := 25
	if v, err := strconv.Atoi(r.URL.Query().Get("n")); err == nil && v > 0 {
		n = min(v, maxSearchResults)
	}
	results := []searchResult{}
	for _, s := range m.browser(r.Context()).repos(snap) {
		if strings.Contains(strings.ToLower(s.name), term) && len(results) < n {
			results = append(results, searchResult{Name: s.name, Description: describeSource(s)})
		}
	}
	return ociserver.WriteJSON(w, r, struct {
		Query      string         `json:"query"`
		NumResults int            `json:"num_results"`
		Results    []searchResult `json:"results"`
	}{r.URL.Query().Get("q"), len(results), results})
}

func describeSource(s repoSummary) string {
	var from []string
	for _, ref := range s.refs {
		if ref.Hosted {
			from = append(from, "hosted")
		} else if host, _, ok := strings.Cut(ref.Name, "/"); ok {
			from = append(from, "cached from "+host)
		}
	}
	return strings.Join(from, ", ")
}
