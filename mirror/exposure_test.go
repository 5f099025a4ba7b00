package mirror_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/credentials"
	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/mirror"
	"github.com/regmirror/regmirror/upstream"
)

// A repository that the upstream serves only with the mirror's credentials
// is refused to anonymous clients: no manifest or blob of it is fetched
// with those credentials, nothing is cached, and the refusal is counted.
// Public repositories of the same upstream are served as ever.
func TestPrivateRepositoryNotPassedOnUnlessExposed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{private: true, unexposed: true})
	private := e.pushNode(t, 1, 4096)
	public, err := e.upstream.PushIndex("team/app", "1", registrytest.ImageOptions{Layers: 1, LayerSize: 4096, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	e.upstream.Reset()

	paths := []string{
		"/v2/library/node/manifests/10",
		"/v2/library/node/manifests/" + private.Descriptor.Digest.String(),
		"/v2/library/node/blobs/" + private.Images[0].Layers[0].Digest.String(),
		"/v2/library/node/tags/list",
		"/v2/node/manifests/10",
	}
	for _, path := range paths {
		got := e.do(t, http.MethodGet, path, nil)
		if got.status != http.StatusForbidden {
			t.Fatalf("anonymous GET %s = %d %s, want 403", path, got.status, got.body)
		}
		assertOCIError(t, got, "DENIED")
		if !strings.Contains(string(got.body), "expose") {
			t.Fatalf("the refusal does not say how to expose the repository: %s", got.body)
		}
	}
	// The probe asks anonymously (a ping, anonymous tokens, a tag list);
	// the mirror's own credentials and token are never used for library/node.
	used := e.upstream.CountRequests(func(r registrytest.Request) bool {
		return (r.Kind == registrytest.KindToken && r.Authorization) ||
			r.Kind == registrytest.KindManifest || r.Kind == registrytest.KindBlob
	})
	if used != 0 {
		t.Fatalf("%d upstream requests with the mirror's credentials, or for content, for a refused repository: %+v", used, e.upstream.Requests())
	}
	if st, _ := e.store.Stats(t.Context()); st.Blobs != 0 || st.Manifests != 0 || st.Tags != 0 {
		t.Fatalf("a refused repository left %+v in the cache", st)
	}
	if got := metricSum(t, e.metrics, "regmirror_not_exposed_total", nil); got != float64(len(paths)) {
		t.Fatalf("refusals counted = %v, want %d", got, len(paths))
	}

	e.pullIndex(t, "team/app", "1", public)
}

// The anonymous probe of a public repository costs one ping, one anonymous
// token and one tag listing, once: the second pull, and cache hits, cost
// nothing more. The first request after the answer's hour renews it, a
// cache hit by digest included, so that a repository made private upstream
// is not readable by digest forever. (A private repository's probe costs
// two more: ggcr retries the listing's 401 with a new token.)
func TestVisibilityAskedOncePerRepository(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{private: true, unexposed: true, tagTTL: time.Minute})
	img, err := e.upstream.PushIndex("team/app", "1", registrytest.ImageOptions{Layers: 3, LayerSize: 4096, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	e.upstream.Reset()

	e.pullIndex(t, "team/app", "1", img)
	scopes := e.upstream.TokenScopes()
	if n := scopes["repository:team/app:pull"]; n != 2 {
		t.Fatalf("token requests on a cold pull = %v, want 2 for team/app: the mirror's and the anonymous probe's", scopes)
	}
	probes := func() int {
		return e.upstream.CountRequests(func(r registrytest.Request) bool { return r.Kind == registrytest.KindTags })
	}
	if n := probes(); n != 1 {
		t.Fatalf("%d tag listings on a cold pull, want 1 (the probe)", n)
	}
	t.Logf("cold pull of a 3-layer index: %d upstream requests, %d token requests, %d pings",
		len(e.upstream.Requests()), scopes["repository:team/app:pull"], e.upstream.Pings())

	e.upstream.Reset()
	e.pullIndex(t, "team/app", "1", img)
	if n := len(e.upstream.Requests()); n != 0 {
		t.Fatalf("warm pull made %d upstream requests, want 0", n)
	}

	// Past the answer's hour, a digest reference from the cache renews it
	// with one probe and fetches no content; the tag's revalidation that
	// follows uses the renewed answer.
	e.clock.Advance(2 * time.Hour)
	e.expectContent(t, "/v2/team/app/manifests/"+img.Descriptor.Digest.String(), img.Descriptor, img.Bytes)
	if n := probes(); n != 1 {
		t.Fatalf("%d probes after an hour-old answer's digest read, want 1", n)
	}
	content := e.upstream.CountRequests(func(r registrytest.Request) bool {
		return r.Kind == registrytest.KindManifest || r.Kind == registrytest.KindBlob
	})
	if content != 0 {
		t.Fatalf("a cached digest reference fetched %d manifests or blobs, want 0", content)
	}
	if got := e.do(t, http.MethodHead, "/v2/team/app/manifests/1", nil); got.status != http.StatusOK {
		t.Fatalf("HEAD after the TTL = %d", got.status)
	}
	if n := probes(); n != 1 {
		t.Fatalf("%d probes, want 1: the tag's revalidation used the renewed answer", n)
	}
}

// Content cached while a repository was exposed (or pulled by an
// authenticated client) is not served to anonymous clients once it is not:
// the check comes before the cache, and costs no upstream request when
// the answer is known.
func TestCachedPrivateContentRefusedOnceNotExposed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{private: true})
	ix := e.pushNode(t, 1, 4096)
	e.pullIndex(t, "library/node", "10", ix)

	keys, err := credentials.New(credentials.Config{Static: map[string]credentials.Static{
		"docker.io": {Username: hubUser, Password: hubPassword},
	}})
	if err != nil {
		t.Fatal(err)
	}
	client, err := upstream.New(upstream.Config{Host: "docker.io", URL: e.upstream.URL()}, keys, upstream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	m, err := mirror.New(mirror.Options{Cache: e.store, Remotes: []mirror.Remote{{
		Host: "docker.io", Upstream: client, Visibility: client,
	}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)
	unexposed := &env{upstream: e.upstream, mirror: srv, store: e.store}

	e.upstream.Reset()
	for _, path := range []string{
		"/v2/library/node/manifests/" + ix.Descriptor.Digest.String(),
		"/v2/library/node/blobs/" + ix.Images[0].Layers[0].Digest.String(),
	} {
		if got := unexposed.do(t, http.MethodGet, path, nil); got.status != http.StatusForbidden {
			t.Fatalf("anonymous GET of cached private %s = %d, want 403", path, got.status)
		}
	}
	if n := e.upstream.Pings(); n != 1 {
		t.Fatalf("%d probes (pings) for two requests of one repository, want 1", n)
	}
}
