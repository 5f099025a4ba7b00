package registrytest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/internal/testclock"
)

// fetchToken asks the token endpoint for scope, with credentials if user is set.
func fetchToken(t *testing.T, r *Registry, scope, user, pass string) (string, int) {
	t.Helper()
	q := url.Values{"service": {Service}, "scope": {scope}}
	req, _ := http.NewRequest(http.MethodGet, r.Realm()+"?"+q.Encode(), nil)
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr tokenResponse
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil {
			t.Fatal(err)
		}
		if tr.Token == "" || tr.Token != tr.AccessToken || tr.ExpiresIn <= 0 || tr.IssuedAt == "" {
			t.Fatalf("token response %+v is incomplete", tr)
		}
	}
	return tr.Token, resp.StatusCode
}

// do sends a request with an optional bearer token, without following redirects.
func do(t *testing.T, method, u, tok string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, u, nil)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, u, err)
	}
	return resp, body
}

func TestClassify(t *testing.T) {
	t.Parallel()
	tests := []struct {
		path string
		want RequestInfo
	}{
		{"/v2/", RequestInfo{Kind: KindPing}},
		{"/v2", RequestInfo{Kind: KindPing}},
		{"/token", RequestInfo{Kind: KindToken}},
		{"/v2/_catalog", RequestInfo{Kind: KindCatalog}},
		{"/v2/library/node/manifests/10", RequestInfo{KindManifest, "library/node", "10"}},
		{"/v2/a/blobs/b/manifests/sha256:ab", RequestInfo{KindManifest, "a/blobs/b", "sha256:ab"}},
		{"/v2/a/manifests/b/blobs/sha256:ab", RequestInfo{KindBlob, "a/manifests/b", "sha256:ab"}},
		{"/v2/x/blobs/uploads/", RequestInfo{Kind: KindUpload, Repo: "x"}},
		{"/v2/x/y/tags/list", RequestInfo{Kind: KindTags, Repo: "x/y"}},
		{"/v2/x/y/referrers/sha256:ab", RequestInfo{KindReferrers, "x/y", "sha256:ab"}},
		{"/v2/a/referrers/b/manifests/sha256:ab", RequestInfo{KindManifest, "a/referrers/b", "sha256:ab"}},
		{"/v2/x", RequestInfo{}},
		{"/other", RequestInfo{}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			t.Parallel()
			if got := classify(tt.path); got != tt.want {
				t.Errorf("classify(%q) = %+v, want %+v", tt.path, got, tt.want)
			}
		})
	}
}

func TestTokenFlow(t *testing.T) {
	t.Parallel()
	clock := testclock.New(time.Unix(1_700_000_000, 0))
	r := New(t, Options{
		Username: "alice", Password: "s3cret",
		Private:  []string{"private/*"},
		TokenTTL: time.Minute,
		Now:      clock.Now,
	})
	if _, err := r.PushImage("library/alpine", "3", ImageOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.PushImage("private/app", "v1", ImageOptions{}); err != nil {
		t.Fatal(err)
	}
	manifest := func(repo string) string {
		return r.URL() + "/v2/" + repo + "/manifests/" + map[string]string{"library/alpine": "3", "private/app": "v1"}[repo]
	}
	scope := func(repo string) string { return "repository:" + repo + ":pull" }

	anon, _ := fetchToken(t, r, scope("library/alpine"), "", "")
	anonPrivate, _ := fetchToken(t, r, scope("private/app"), "", "")
	authed, _ := fetchToken(t, r, scope("private/app"), "alice", "s3cret")
	if _, status := fetchToken(t, r, scope("private/app"), "alice", "wrong"); status != http.StatusUnauthorized {
		t.Errorf("wrong password: token status %d, want 401", status)
	}

	tests := []struct {
		name       string
		url, token string
		wantStatus int
		wantChall  string // substring of WWW-Authenticate
	}{
		{"ping without token", r.URL() + "/v2/", "", 401, `Bearer realm="` + r.Realm() + `",service="registrytest"`},
		{"ping with token", r.URL() + "/v2/", anon, 200, ""},
		{"public without token", manifest("library/alpine"), "", 401, `scope="repository:library/alpine:pull"`},
		{"public with token", manifest("library/alpine"), anon, 200, ""},
		{"token for another repository", manifest("private/app"), anon, 401, `error="insufficient_scope"`},
		{"private with anonymous token", manifest("private/app"), anonPrivate, 401, `scope="repository:private/app:pull"`},
		{"private with credentials", manifest("private/app"), authed, 200, ""},
		{"unknown token", manifest("library/alpine"), "forged", 401, `error="invalid_token"`},
	}
	for _, tt := range tests {
		resp, body := do(t, http.MethodGet, tt.url, tt.token)
		if resp.StatusCode != tt.wantStatus {
			t.Errorf("%s: status %d, want %d (%s)", tt.name, resp.StatusCode, tt.wantStatus, body)
		}
		if got := resp.Header.Get("WWW-Authenticate"); !strings.Contains(got, tt.wantChall) {
			t.Errorf("%s: WWW-Authenticate %q lacks %q", tt.name, got, tt.wantChall)
		}
		if tt.wantStatus == 401 && !bytes.Contains(body, []byte(`"code":"UNAUTHORIZED"`)) {
			t.Errorf("%s: body %s is not an UNAUTHORIZED error", tt.name, body)
		}
	}

	clock.Advance(time.Minute)
	if resp, _ := do(t, http.MethodGet, manifest("library/alpine"), anon); resp.StatusCode != 401 {
		t.Errorf("expired token: status %d, want 401", resp.StatusCode)
	}
	if got := r.TokenRequests(scope("private/app")); got != 3 {
		t.Errorf("TokenRequests(private/app) = %d, want 3", got)
	}
}

// TestPullWithGGCR pulls a generated index with go-containerregistry's
// client, validating every digest and diff ID, and checks the accounting.
func TestPullWithGGCR(t *testing.T) {
	t.Parallel()
	r := New(t, Options{Username: "bob", Password: "pw", Private: []string{"team/*"}})
	ix, err := r.PushIndex("team/node", "10", ImageOptions{Layers: 3, LayerSize: 64 << 10, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(r.Host() + "/team/node:10")
	if err != nil {
		t.Fatal(err)
	}

	if _, err := remote.Index(ref); err == nil {
		t.Fatal("anonymous pull of a private repository succeeded")
	}
	r.Reset()

	idx, err := remote.Index(ref, remote.WithAuth(&authn.Basic{Username: "bob", Password: "pw"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(idx); err != nil {
		t.Fatalf("generated index is invalid: %v", err)
	}
	if d, _ := idx.Digest(); d.String() != ix.Descriptor.Digest.String() {
		t.Errorf("index digest %s, want %s", d, ix.Descriptor.Digest)
	}
	for _, b := range ix.Blobs() {
		if got := r.BlobGets(b.Digest); got < 1 {
			t.Errorf("blob %s: %d GETs, want at least 1", b.Digest, got)
		}
	}
	if got := r.TokenRequests("repository:team/node:pull"); got != 1 {
		t.Errorf("token requests = %d, want 1 (scopes: %v)", got, r.TokenScopes())
	}
	if got := r.ManifestGets("team/node", "10"); got != 1 {
		t.Errorf("manifest GETs of tag = %d, want 1", got)
	}
	if r.Pings() == 0 {
		t.Error("no ping counted")
	}
	r.Reset()
	if r.BlobGetsTotal() != 0 || len(r.Requests()) != 0 || r.Pings() != 0 {
		t.Error("Reset left counts behind")
	}
}

func TestFixtureIsDeterministic(t *testing.T) {
	t.Parallel()
	a := New(t, Options{})
	b := New(t, Options{})
	opts := ImageOptions{Layers: 2, LayerSize: 4096, Seed: 42}
	ixA, err := a.PushIndex("library/node", "10", opts)
	if err != nil {
		t.Fatal(err)
	}
	ixB, err := b.PushIndex("library/node", "10", opts)
	if err != nil {
		t.Fatal(err)
	}
	if ixA.Descriptor.Digest != ixB.Descriptor.Digest {
		t.Errorf("same seed, different index digests: %s vs %s", ixA.Descriptor.Digest, ixB.Descriptor.Digest)
	}
	if len(ixA.Images) != 2 || len(ixA.Blobs()) != 6 {
		t.Fatalf("got %d images and %d blobs, want 2 and 6", len(ixA.Images), len(ixA.Blobs()))
	}
	seen := map[digest.Digest]bool{}
	for _, blob := range ixA.Blobs() {
		if seen[blob.Digest] {
			t.Errorf("blob %s appears twice", blob.Digest)
		}
		seen[blob.Digest] = true
	}
	other, err := a.PushIndex("library/node", "11", ImageOptions{Layers: 2, LayerSize: 4096, Seed: 43})
	if err != nil {
		t.Fatal(err)
	}
	if other.Descriptor.Digest == ixA.Descriptor.Digest {
		t.Error("different seeds gave the same index")
	}
}

// pullBlob fetches d from library/x with a fresh token, following redirects.
func pullBlob(t *testing.T, r *Registry, d digest.Digest) ([]byte, error) {
	t.Helper()
	tok, _ := fetchToken(t, r, "repository:library/x:pull", "", "")
	req, _ := http.NewRequest(http.MethodGet, r.URL()+"/v2/library/x/blobs/"+d.String(), nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("blob GET: status %d", resp.StatusCode)
	}
	return io.ReadAll(resp.Body)
}

func TestFaults(t *testing.T) {
	t.Parallel()
	r := New(t, Options{})
	data := bytes.Repeat([]byte("0123456789abcdef"), 8<<10)
	d := r.PutBlob(data)

	t.Run("corrupt", func(t *testing.T) {
		r.InjectFault(d, Fault{Kind: Corrupt, Times: 1})
		got, err := pullBlob(t, r, d)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(data) || bytes.Equal(got, data) {
			t.Errorf("corrupt body: len %d equal=%v, want len %d and different", len(got), bytes.Equal(got, data), len(data))
		}
		if got, _ := pullBlob(t, r, d); !bytes.Equal(got, data) {
			t.Error("fault with Times 1 struck twice")
		}
	})
	t.Run("truncate", func(t *testing.T) {
		h := r.InjectFault(d, Fault{Kind: Truncate, At: 1000})
		defer r.ClearFault(d)
		got, err := pullBlob(t, r, d)
		if !errors.Is(err, io.ErrUnexpectedEOF) || len(got) != 1000 {
			t.Errorf("truncated body: %d bytes, err %v; want 1000 bytes and unexpected EOF", len(got), err)
		}
		if h.Hits() != 1 {
			t.Errorf("Hits = %d, want 1", h.Hits())
		}
	})
	t.Run("stall then release", func(t *testing.T) {
		h := r.InjectFault(d, Fault{Kind: Stall})
		defer r.ClearFault(d)
		done := make(chan []byte)
		go func() {
			got, _ := pullBlob(t, r, d)
			done <- got
		}()
		<-h.Hit()
		h.Release()
		if got := <-done; !bytes.Equal(got, data) {
			t.Errorf("released stall delivered %d bytes, want the whole blob", len(got))
		}
	})
	t.Run("corrupt manifest", func(t *testing.T) {
		img, err := r.PushImage("library/x", "m", ImageOptions{})
		if err != nil {
			t.Fatal(err)
		}
		r.InjectFault(img.Manifest.Digest, Fault{Kind: Corrupt})
		defer r.ClearFault(img.Manifest.Digest)
		tok, _ := fetchToken(t, r, "repository:library/x:pull", "", "")
		resp, body := do(t, http.MethodGet, r.URL()+"/v2/library/x/manifests/m", tok)
		if resp.Header.Get("Docker-Content-Digest") != img.Manifest.Digest.String() || digest.FromBytes(body) == img.Manifest.Digest {
			t.Error("manifest fault should keep the digest header and change the body")
		}
	})
}

func TestStallReleasedByClose(t *testing.T) {
	t.Parallel()
	r, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := r.PutBlob(make([]byte, 1<<20))
	h := r.InjectFault(d, Fault{Kind: Stall})
	errc := make(chan error)
	go func() {
		_, err := pullBlob(t, r, d)
		errc <- err
	}()
	<-h.Hit()
	r.Close()
	if err := <-errc; err == nil {
		t.Error("a stalled download completed after Close")
	}
}

func TestDownAndInjectedFailures(t *testing.T) {
	t.Parallel()
	r := New(t, Options{})
	tok, _ := fetchToken(t, r, "repository:library/x:pull", "", "")

	r.SetDown(true)
	if resp, body := do(t, http.MethodGet, r.URL()+"/v2/", tok); resp.StatusCode != 503 || !bytes.Contains(body, []byte("UNAVAILABLE")) {
		t.Errorf("down: %d %s, want 503 UNAVAILABLE", resp.StatusCode, body)
	}
	if _, status := fetchToken(t, r, "repository:library/x:pull", "", ""); status != 503 {
		t.Errorf("down token endpoint: %d, want 503", status)
	}
	r.SetDown(false)

	r.FailNext(KindPing, 2, http.StatusTooManyRequests)
	for i, want := range []int{429, 429, 200} {
		if resp, _ := do(t, http.MethodGet, r.URL()+"/v2/", tok); resp.StatusCode != want {
			t.Errorf("ping %d: %d, want %d", i, resp.StatusCode, want)
		}
	}
}

func TestRedirectToCDN(t *testing.T) {
	t.Parallel()
	r := New(t, Options{RedirectBlobs: true})
	img, err := r.PushImage("library/x", "latest", ImageOptions{})
	if err != nil {
		t.Fatal(err)
	}
	layer := img.Layers[0].Digest
	tok, _ := fetchToken(t, r, "repository:library/x:pull", "", "")
	resp, _ := do(t, http.MethodGet, r.URL()+"/v2/library/x/blobs/"+layer.String(), tok)
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusTemporaryRedirect || !strings.HasPrefix(loc, r.CDNURL()+"/blobs/"+layer.String()) {
		t.Fatalf("blob GET: %d Location %q, want 307 to the CDN", resp.StatusCode, loc)
	}

	// go-containerregistry's client follows the redirect without its token.
	ref, _ := name.ParseReference(r.Host() + "/library/x:latest")
	rimg, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(rimg); err != nil {
		t.Fatal(err)
	}
	cdn := r.CDNRequests()
	if len(cdn) == 0 {
		t.Fatal("the CDN saw no request")
	}
	for _, c := range cdn {
		if c.Header.Get("Authorization") != "" {
			t.Errorf("CDN request %s %s carried Authorization", c.Method, c.Path)
		}
	}
}

func TestTagsPagination(t *testing.T) {
	t.Parallel()
	r := New(t, Options{TagsPageSize: 2})
	for _, tag := range []string{"a", "b", "c", "d", "e"} {
		if _, err := r.PushImage("library/x", tag, ImageOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	tok, _ := fetchToken(t, r, "repository:library/x:pull", "", "")
	var all []string
	next := "/v2/library/x/tags/list"
	for pages := 0; next != ""; pages++ {
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
		resp, body := do(t, http.MethodGet, r.URL()+next, tok)
		var list struct{ Tags []string }
		if err := json.Unmarshal(body, &list); err != nil {
			t.Fatal(err)
		}
		all = append(all, list.Tags...)
		next = strings.TrimSuffix(strings.TrimPrefix(resp.Header.Get("Link"), "<"), `>; rel="next"`)
	}
	if got := strings.Join(all, ","); got != "a,b,c,d,e" {
		t.Errorf("tags %s, want a,b,c,d,e", got)
	}
}
