package upstream

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// hostileTags serves /v2/<repo>/tags/list as endless pages, each linking
// to the next, and counts the pages served.
func hostileTags(t *testing.T, page func(n int) string) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var pages atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/tags/list") {
			w.WriteHeader(http.StatusOK) // the ping: no auth
			return
		}
		n := pages.Add(1)
		w.Header().Set("Link", fmt.Sprintf(`</v2/org/app/tags/list?last=%d>; rel="next"`, n))
		fmt.Fprint(w, page(int(n)))
	}))
	t.Cleanup(srv.Close)
	return srv, &pages
}

// A hostile registry answers a tag listing with page after page, each
// within the page bound. The listing stops at the total bound, with a
// clear error, instead of buffering up to 1000 pages.
func TestTagListingHasATotalBound(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		page     func(n int) string
		maxPages int64
		wantErr  string
	}{
		{"many tags", func(n int) string {
			tags := make([]string, 2000)
			for i := range tags {
				tags[i] = fmt.Sprintf(`"t%d-%d"`, n, i)
			}
			return `{"tags":[` + strings.Join(tags, ",") + `]}`
		}, 51, "more than 100000 tags"},
		{"long tags", func(n int) string {
			return `{"tags":["` + strings.Repeat("x", 1<<20) + `"]}`
		}, 17, "tag list exceeds 16777216 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, pages := hostileTags(t, tt.page)
			c, err := New(Config{URL: srv.URL, Retries: -1}, nil, Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(c.Close)
			tags, err := c.ListTags(context.Background(), "org/app", nil)
			if n := pages.Load(); n > tt.maxPages {
				t.Fatalf("the client fetched %d pages (%d tags, err %v), want at most %d", n, len(tags), err, tt.maxPages)
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ListTags error = %v, want one saying %q", err, tt.wantErr)
			}
			if asError(t, err).Temporary() {
				t.Fatal("an oversized listing is reported as temporary: retrying fetches it again")
			}
		})
	}
}

// A hostile registry answers the token request, or an error, with an
// endless body. The client reads a bounded prefix and fails; it never
// buffers the body.
func TestEndlessTokenAndErrorBodiesBounded(t *testing.T) {
	t.Parallel()
	const endless = 64 << 20
	tests := []struct {
		name    string
		handler func(w http.ResponseWriter, r *http.Request) bool // true: it streamed the endless body
	}{
		{"token response", func(w http.ResponseWriter, r *http.Request) bool {
			if r.URL.Path == "/token" {
				w.WriteHeader(http.StatusOK)
				return true
			}
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="http://%s/token",service="x"`, r.Host))
			w.WriteHeader(http.StatusUnauthorized)
			return false
		}},
		{"error body", func(w http.ResponseWriter, r *http.Request) bool {
			if r.URL.Path == "/v2/" {
				return false // the ping: no auth
			}
			w.WriteHeader(http.StatusNotFound)
			return true
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var written atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if !tt.handler(w, r) {
					return
				}
				chunk := []byte(strings.Repeat(" ", 64<<10))
				for written.Load() < endless {
					n, err := w.Write(chunk)
					written.Add(int64(n))
					if err != nil {
						return
					}
				}
			}))
			t.Cleanup(srv.Close)
			c, err := New(Config{URL: srv.URL, Retries: -1}, nil, Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(c.Close)
			if _, _, err := c.GetManifest(context.Background(), "org/app", "1"); err == nil {
				t.Fatal("GET manifest succeeded")
			}
			c.Close()
			srv.CloseClientConnections()
			if n := written.Load(); n >= endless {
				t.Fatalf("the client read the whole %d-byte body", n)
			}
		})
	}
}
