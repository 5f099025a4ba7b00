package mirror_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regmirror/regmirror/internal/registrytest"
)

func TestBaseAnswersWithoutChallenge(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{private: true})
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		got := e.do(t, method, "/v2/", nil)
		if got.status != http.StatusOK || got.header.Get("WWW-Authenticate") != "" {
			t.Fatalf("%s /v2/ = %d with challenge %q, want 200 without one", method, got.status, got.header.Get("WWW-Authenticate"))
		}
		if v := got.header.Get("Docker-Distribution-API-Version"); v != "registry/2.0" {
			t.Fatalf("%s /v2/: API version header %q", method, v)
		}
		if method == http.MethodGet && string(got.body) != "{}" {
			t.Fatalf("GET /v2/ body %q, want {}", got.body)
		}
	}
	if n := len(e.upstream.Requests()); n != 0 {
		t.Fatalf("/v2/ made %d upstream requests, want 0", n)
	}
}

// The core promise: an image the upstream serves only with credentials is
// served to an anonymous client, byte for byte, and a second pull never
// touches the upstream.
func TestPrivateImageServedAnonymouslyThenFromCache(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{private: true})
	ix := e.pushNode(t, 3, 256<<10)

	e.pullIndex(t, "library/node", "10", ix)
	for _, b := range ix.Blobs() {
		if n := e.upstream.BlobGets(b.Digest); n != 1 {
			t.Fatalf("cold pull: %d upstream GETs of blob %s, want 1", n, b.Digest)
		}
	}
	for _, r := range e.upstream.Requests() {
		if r.Method == http.MethodGet && strings.Contains(r.Path, "/manifests/") && !strings.Contains(r.Path, "sha256:") {
			t.Fatalf("cold pull GET a manifest by tag (%s): tags must be resolved with HEAD", r.Path)
		}
	}

	e.upstream.Reset()
	e.pullIndex(t, "library/node", "10", ix)
	if n := len(e.upstream.Requests()); n != 0 {
		t.Fatalf("warm pull within the tag TTL made %d upstream requests, want 0: %+v", n, e.upstream.Requests())
	}
}

// Single-component names are Docker Hub official images.
func TestOfficialImageShortName(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ix := e.pushNode(t, 1, 1024)
	got := e.do(t, http.MethodGet, "/v2/node/manifests/10", nil)
	if got.status != http.StatusOK || got.header.Get("Docker-Content-Digest") != ix.Descriptor.Digest.String() {
		t.Fatalf("GET /v2/node/manifests/10 = %d %q", got.status, got.header.Get("Docker-Content-Digest"))
	}
}

func TestWithoutCredentialsPrivateImageIsDenied(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{private: true, withoutCreds: true})
	e.pushNode(t, 1, 1024)
	got := e.do(t, http.MethodHead, "/v2/library/node/manifests/10", nil)
	if got.status == http.StatusUnauthorized || got.header.Get("WWW-Authenticate") != "" {
		t.Fatalf("pull path answered %d with challenge %q: dockerd would fall back to Docker Hub", got.status, got.header.Get("WWW-Authenticate"))
	}
	if got.status != http.StatusForbidden {
		t.Fatalf("HEAD of a denied image = %d, want 403", got.status)
	}
}

// Eight clients pulling one cold image at once cause one upstream GET per
// blob and per manifest, and all eight get every byte right.
func TestConcurrentColdPullsFetchEachBlobOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{private: true})
	ix := e.pushNode(t, 4, 512<<10)

	const clients = 8
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() { e.pullIndex(t, "library/node", "10", ix) })
	}
	wg.Wait()
	for _, b := range ix.Blobs() {
		if n := e.upstream.BlobGets(b.Digest); n != 1 {
			t.Errorf("%d upstream GETs of blob %s, want 1", n, b.Digest)
		}
	}
	if n := e.upstream.ManifestGets("library/node", ix.Descriptor.Digest.String()); n != 1 {
		t.Errorf("%d upstream GETs of the index, want 1", n)
	}
	if n := e.upstream.ManifestHeads("library/node", "10"); n != 1 {
		t.Errorf("%d upstream HEADs of the tag, want 1", n)
	}
}

// A cold pull of a multi-layer image authenticates once for the repository,
// not once per blob.
func TestUpstreamTokenReused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{private: true})
	ix := e.pushNode(t, 5, 4096)
	e.pullIndex(t, "library/node", "10", ix)
	scopes := e.upstream.TokenScopes()
	if n := scopes["repository:library/node:pull"]; n != 1 {
		t.Fatalf("token requests per scope = %v, want exactly 1 for repository:library/node:pull", scopes)
	}
}

// A blob whose bytes do not match its digest never reaches a client as a
// complete body and is not cached; the next request fetches it again.
func TestCorruptBlobIsNotServedOrCached(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ix := e.pushNode(t, 1, 256<<10)
	layer := ix.Images[0].Layers[0]
	e.upstream.InjectFault(layer.Digest, registrytest.Fault{Kind: registrytest.Corrupt, Times: 1})

	path := "/v2/library/node/blobs/" + layer.Digest.String()
	bad := e.do(t, http.MethodGet, path, nil)
	if bad.err == nil && bad.status == http.StatusOK && sha256Digest(bad.body) != layer.Digest {
		t.Fatal("a corrupt blob was delivered as a complete 200 response")
	}
	if bad.err == nil && bad.status == http.StatusOK {
		t.Fatalf("GET of a corrupt blob succeeded")
	}
	e.expectBlob(t, "library/node", layer)
	if n := e.upstream.BlobGets(layer.Digest); n != 2 {
		t.Fatalf("%d upstream GETs, want 2 (the corrupt one, then a fresh one)", n)
	}
	e.expectBlob(t, "library/node", layer)
	if n := e.upstream.BlobGets(layer.Digest); n != 2 {
		t.Fatalf("%d upstream GETs after a cached read, want still 2", n)
	}
}

func TestRangeRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ix := e.pushNode(t, 1, 64<<10)
	layer := ix.Images[0].Layers[0]
	path := "/v2/library/node/blobs/" + layer.Digest.String()
	full := e.do(t, http.MethodGet, path, nil).body // fills the cache

	for _, cold := range []bool{true, false} {
		tests := []struct {
			header     string
			start, end int64
		}{
			{"bytes=500-1499", 500, 1499},
			{"bytes=500-", 500, layer.Size - 1},
			{"bytes=-500", layer.Size - 500, layer.Size - 1},
		}
		for _, tt := range tests {
			if cold {
				e2 := newEnv(t, envOptions{})
				e2.pushNode(t, 1, 64<<10)
				checkRange(t, e2, path, tt.header, full, tt.start, tt.end, layer.Size)
				continue
			}
			checkRange(t, e, path, tt.header, full, tt.start, tt.end, layer.Size)
		}
	}
	past := e.do(t, http.MethodGet, path, http.Header{"Range": {"bytes=999999999-"}})
	if past.status != http.StatusRequestedRangeNotSatisfiable {
		t.Fatalf("range past the end = %d, want 416", past.status)
	}
}

func checkRange(t *testing.T, e *env, path, header string, full []byte, start, end, size int64) {
	t.Helper()
	got := e.do(t, http.MethodGet, path, http.Header{"Range": {header}})
	if got.err != nil || got.status != http.StatusPartialContent {
		t.Fatalf("Range %s = %d, %v", header, got.status, got.err)
	}
	wantCR := "bytes " + itoa(start) + "-" + itoa(end) + "/" + itoa(size)
	if cr := got.header.Get("Content-Range"); cr != wantCR {
		t.Fatalf("Range %s: Content-Range %q, want %q", header, cr, wantCR)
	}
	if string(got.body) != string(full[start:end+1]) {
		t.Fatalf("Range %s: wrong bytes", header)
	}
}

// A cached tag is served stale while the upstream is down, with a Warning,
// and an uncached image fails with a clear 5xx; past stale_if_error the
// stale tag is refused.
func TestStaleTagServedWhileUpstreamDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{tagTTL: time.Minute, staleIfError: time.Hour})
	ix := e.pushNode(t, 1, 1024)
	e.pullIndex(t, "library/node", "10", ix)

	e.upstream.SetDown(true)
	e.clock.Advance(2 * time.Minute)
	got := e.do(t, http.MethodHead, "/v2/library/node/manifests/10", nil)
	if got.status != http.StatusOK || got.header.Get("Warning") == "" {
		t.Fatalf("stale HEAD = %d, Warning %q; want 200 with a Warning", got.status, got.header.Get("Warning"))
	}
	uncached := e.do(t, http.MethodGet, "/v2/library/other/manifests/1", nil)
	if uncached.status < 500 {
		t.Fatalf("uncached pull with upstream down = %d, want 5xx", uncached.status)
	}
	assertOCIError(t, uncached, "UNAVAILABLE")

	e.clock.Advance(2 * time.Hour)
	refused := e.do(t, http.MethodGet, "/v2/library/node/manifests/10", nil)
	if refused.status < 500 {
		t.Fatalf("tag past stale_if_error = %d, want 5xx", refused.status)
	}
}

func TestHostileRequestsNeverReachUpstream(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	tests := []struct {
		path   string
		status int
		code   string
	}{
		{"/v2/a/../b/manifests/1", http.StatusBadRequest, "NAME_INVALID"},
		{"/v2/a/%2e%2e/b/manifests/1", http.StatusBadRequest, "NAME_INVALID"},
		{"/v2/a%2Fb/manifests/1", http.StatusBadRequest, "NAME_INVALID"},
		{"/v2/Upper/manifests/1", http.StatusBadRequest, "NAME_INVALID"},
		{"/v2/a/blobs/md5:d41d8cd98f00b204e9800998ecf8427e", http.StatusBadRequest, "DIGEST_INVALID"},
		{"/v2/a/manifests/" + strings.Repeat("t", 200), http.StatusBadRequest, "TAG_INVALID"},
		{"/v2/evil.example.com/x/manifests/1", http.StatusNotFound, "NAME_UNKNOWN"},
		{"/v2/x/manifests/1?ns=169.254.169.254", http.StatusNotFound, "NAME_UNKNOWN"},
	}
	for _, tt := range tests {
		got := e.do(t, http.MethodGet, tt.path, nil)
		if got.status != tt.status {
			t.Errorf("GET %s = %d, want %d", tt.path, got.status, tt.status)
		}
		assertOCIError(t, got, tt.code)
	}
	if n := len(e.upstream.Requests()); n != 0 {
		t.Fatalf("hostile requests made %d upstream requests", n)
	}
}

func TestWritesAreRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	got := e.do(t, http.MethodPost, "/v2/library/node/blobs/uploads/", nil)
	if got.status != http.StatusMethodNotAllowed {
		t.Fatalf("POST upload = %d, want 405", got.status)
	}
	assertOCIError(t, got, "UNSUPPORTED")
}

func TestTagsListProxied(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{private: true})
	e.pushNode(t, 1, 1024)
	if _, err := e.upstream.PushIndex("library/node", "12", registrytest.ImageOptions{Layers: 1, LayerSize: 1024, Seed: 12}); err != nil {
		t.Fatal(err)
	}
	got := e.do(t, http.MethodGet, "/v2/library/node/tags/list", nil)
	var list struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}
	if err := json.Unmarshal(got.body, &list); err != nil || got.status != http.StatusOK {
		t.Fatalf("tags/list = %d %s: %v", got.status, got.body, err)
	}
	if strings.Join(list.Tags, ",") != "10,12" {
		t.Fatalf("tags = %v, want [10 12]", list.Tags)
	}
}

func assertOCIError(t *testing.T, got response, code string) {
	t.Helper()
	var body struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(got.body, &body); err != nil || len(body.Errors) != 1 || body.Errors[0].Code != code {
		t.Fatalf("error body %q, want one error with code %s", got.body, code)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
