package mirror_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"testing"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/credentials"
	"github.com/regmirror/regmirror/mirror"
	"github.com/regmirror/regmirror/upstream"
)

// hostileTagsUpstream is a registry that lists, for library/evil, the tag
// a case names and one that sorts after every other ("~end"), so that a
// page of one tag ends on the hostile one.
func hostileTagsUpstream(t *testing.T, tag string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v2/":
			w.WriteHeader(http.StatusOK)
		case "/v2/library/evil/tags/list":
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"name": "library/evil", "tags": []string{tag, "~end"}})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// linkValue is one whole Link header as the spec writes it for the next
// page: a URL in angle brackets with nothing but rel="next" after it.
var linkValue = regexp.MustCompile(`^<([^<>]*)>; rel="next"$`)

// A hostile upstream's tag cannot end the Link header's URL, add
// parameters to the link or the URL, or break the header: the link names
// exactly the tag, and following it gives the next page.
func TestTagListLinkEscapesHostileTags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		tag  string
	}{
		{"closes the URL and adds a link", `x>; rel="prev", <http://evil.example/steal`},
		{"adds query parameters", "a&n=1000&last=zzz"},
		{"starts another query", "b?ns=evil.example"},
		{"adds a link parameter", `c;rel="next"`},
		{"breaks the header", "d\r\nSet-Cookie: pwn=1"},
		{"spaces, percent and fragment", "e f%20g#frag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newTagsMirror(t, hostileTagsUpstream(t, tt.tag).URL)

			first := getTags(t, srv.URL+"/v2/library/evil/tags/list?n=1")
			if !slices.Equal(first.tags, []string{tt.tag}) {
				t.Fatalf("first page %q, want only the hostile tag", first.tags)
			}
			if len(first.links) != 1 {
				t.Fatalf("%d Link headers %q, want one", len(first.links), first.links)
			}
			m := linkValue.FindStringSubmatch(first.links[0])
			if m == nil {
				t.Fatalf("Link header %q is not one <url>; rel=\"next\"", first.links[0])
			}
			next, err := url.Parse(m[1])
			if err != nil {
				t.Fatalf("Link URL %q: %v", m[1], err)
			}
			q := next.Query()
			if next.Path != "/v2/library/evil/tags/list" || len(q) != 2 || q.Get("n") != "1" || !slices.Equal(q["last"], []string{tt.tag}) {
				t.Fatalf("Link URL %q: path %q, query %v; want the tag list with n=1 and last=the hostile tag only", m[1], next.Path, q)
			}

			second := getTags(t, srv.URL+m[1])
			if !slices.Equal(second.tags, []string{"~end"}) || len(second.links) != 0 {
				t.Fatalf("following the link: tags %q, links %q; want [~end] and no link", second.tags, second.links)
			}
		})
	}
}

// The next page's link keeps the ns parameter, so it lists the same
// registry's tags.
func TestTagListLinkKeepsNamespace(t *testing.T) {
	t.Parallel()
	srv := newTagsMirror(t, hostileTagsUpstream(t, "v1").URL)
	page := getTags(t, srv.URL+"/v2/library/evil/tags/list?n=1&ns=docker.io")
	if len(page.links) != 1 || page.links[0] != `</v2/library/evil/tags/list?last=v1&n=1&ns=docker.io>; rel="next"` {
		t.Fatalf("Link %q, want the next page on ns=docker.io", page.links)
	}
}

func newTagsMirror(t *testing.T, upstreamURL string) *httptest.Server {
	t.Helper()
	store, err := cache.Open(context.Background(), cache.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	keys, err := credentials.New(credentials.Config{})
	if err != nil {
		t.Fatal(err)
	}
	client, err := upstream.New(upstream.Config{Host: "docker.io", URL: upstreamURL}, keys, upstream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	m, err := mirror.New(mirror.Options{Cache: store, Remotes: []mirror.Remote{{Host: "docker.io", Upstream: client}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)
	return srv
}

type tagsPage struct {
	tags  []string
	links []string
}

func getTags(t *testing.T, u string) tagsPage {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d", u, resp.StatusCode)
	}
	var list struct {
		Tags []string `json:"tags"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	return tagsPage{tags: list.Tags, links: resp.Header.Values("Link")}
}
