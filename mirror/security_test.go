package mirror_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/crypto/bcrypt"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/credentials"
	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/internal/testclock"
	"github.com/regmirror/regmirror/mirror"
	"github.com/regmirror/regmirror/upstream"
)

// hostileHost is a registry the operator configured that turned hostile:
// it answers 200 to every request and claims whatever digest it likes.
const hostileHost = "evil.test"

// attackEnv is a mirror holding credentials for a Docker-Hub-like upstream
// whose library/* only those credentials can read (not exposed), with a
// hostile second upstream and hosted repositories (secret/**, pulls need
// a login), as an attacker meets it.
type attackEnv struct {
	hub          *registrytest.Registry
	hubPrivate   atomic.Bool // team/app needs credentials too
	hostileCalls atomic.Int32
	// hostileDigest is the digest the hostile upstream claims its tags have.
	hostileDigest atomic.Value
	store         *cache.Store
	server        *httptest.Server
	clock         *testclock.Clock
}

func newAttackEnv(t *testing.T) *attackEnv {
	t.Helper()
	e := &attackEnv{clock: testclock.New(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC))}
	e.hostileDigest.Store("")
	e.hub = registrytest.New(t, registrytest.Options{
		Username: hubUser, Password: hubPassword, Private: []string{"library/*"},
		IsPrivate: func(repo string) bool { return repo == "team/app" && e.hubPrivate.Load() },
	})
	hostile := httptest.NewServer(http.HandlerFunc(e.serveHostile))
	t.Cleanup(hostile.Close)

	store, err := cache.Open(context.Background(), cache.Options{Dir: t.TempDir(), Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	hosted, err := store.Hosted(cache.HostedOptions{UploadTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(pushPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	users, err := mirror.ParseHtpasswd(strings.NewReader(pushUser + ":" + string(hash) + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := mirror.New(mirror.Options{
		Cache:   store,
		Remotes: []mirror.Remote{e.remote(t, "docker.io", e.hub.URL(), true), e.remote(t, hostileHost, hostile.URL, false)},
		Now:     e.clock.Now,
		Hosted: &mirror.HostedOptions{Store: hosted, Users: users, Repositories: []string{"secret/**"},
			PrivatePulls: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	e.store, e.server = store, httptest.NewServer(m)
	t.Cleanup(e.server.Close)
	return e
}

// remote is a Remote for host at url, with the fixture's credentials.
func (e *attackEnv) remote(t *testing.T, host, url string, withCreds bool) mirror.Remote {
	t.Helper()
	static := map[string]credentials.Static{}
	if withCreds {
		static[host] = credentials.Static{Username: hubUser, Password: hubPassword}
	}
	keys, err := credentials.New(credentials.Config{Static: static})
	if err != nil {
		t.Fatal(err)
	}
	client, err := upstream.New(upstream.Config{Host: host, URL: url}, keys, upstream.Options{Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	rem := mirror.Remote{Host: host, Upstream: client}
	if withCreds {
		rem.Visibility = client
	}
	return rem
}

// serveHostile answers like a registry that confirms everything: any blob
// exists (with its own bytes), any tag points at hostileDigest.
func (e *attackEnv) serveHostile(w http.ResponseWriter, r *http.Request) {
	e.hostileCalls.Add(1)
	switch {
	case strings.Contains(r.URL.Path, "/manifests/"):
		d := e.hostileDigest.Load().(string)
		w.Header().Set("Docker-Content-Digest", d)
		w.Header().Set("Content-Type", registrytest.MediaTypeDockerManifest)
		w.Header().Set("Content-Length", "1234")
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			w.Write([]byte(`{"schemaVersion":2}`))
		}
	case strings.Contains(r.URL.Path, "/blobs/"):
		body := []byte("whatever you asked for, here it is")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			w.Write(body)
		}
	default:
		w.WriteHeader(http.StatusOK)
	}
}

// do sends a request to the mirror, logged in as the mirror's user when
// user is set, anonymously otherwise.
func (e *attackEnv) do(t *testing.T, method, path string, loggedIn bool) response {
	t.Helper()
	req, err := http.NewRequest(method, e.server.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if loggedIn {
		req.SetBasicAuth(pushUser, pushPassword)
	}
	resp, err := e.server.Client().Do(req)
	if err != nil {
		return response{err: err}
	}
	defer resp.Body.Close()
	got := response{status: resp.StatusCode, header: resp.Header}
	got.body = make([]byte, 0, 512)
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		got.body = append(got.body, buf[:n]...)
		if err != nil {
			break
		}
	}
	return got
}

// pullAsUser pulls every manifest and blob of ix logged in.
func (e *attackEnv) pullAsUser(t *testing.T, repo string, ix registrytest.Index) {
	t.Helper()
	paths := []string{"/v2/" + repo + "/manifests/" + ix.Descriptor.Digest.String()}
	for _, img := range ix.Images {
		paths = append(paths, "/v2/"+repo+"/manifests/"+img.Manifest.Digest.String())
		for _, b := range img.Blobs() {
			paths = append(paths, "/v2/"+repo+"/blobs/"+b.Digest.String())
		}
	}
	for _, p := range paths {
		if got := e.do(t, http.MethodGet, p, true); got.status != http.StatusOK {
			t.Fatalf("logged-in GET %s = %d %s", p, got.status, got.body)
		}
	}
}

// contentPaths are the paths under repo that name ix's content by digest.
func contentPaths(repo string, ix registrytest.Index) []string {
	paths := []string{repo + "/manifests/" + ix.Descriptor.Digest.String()}
	for _, img := range ix.Images {
		paths = append(paths, repo+"/manifests/"+img.Manifest.Digest.String())
		for _, b := range img.Blobs() {
			paths = append(paths, repo+"/blobs/"+b.Digest.String())
		}
	}
	return paths
}

// assertRefused checks that an anonymous GET and HEAD of every path is
// refused, and that no body carries content.
func (e *attackEnv) assertRefused(t *testing.T, paths []string) {
	t.Helper()
	for _, p := range paths {
		for _, method := range []string{http.MethodHead, http.MethodGet} {
			got := e.do(t, method, p, false)
			if got.status < 400 {
				t.Errorf("anonymous %s %s = %d (%d bytes): content only the mirror's credentials can read leaked", method, p, got.status, len(got.body))
				continue
			}
			if method == http.MethodGet {
				assertOCIErrorBody(t, got)
			}
		}
	}
}

func assertOCIErrorBody(t *testing.T, got response) {
	t.Helper()
	if !strings.Contains(string(got.body), `"errors":[{"code":"`) {
		t.Errorf("refusal body %q is not an OCI error", got.body)
	}
}

// A logged-in client pulls a private upstream image; the cache then holds
// its content. An anonymous client names those digests under a public
// repository of the same upstream, by GET and HEAD, with containerd's ns
// parameter and with a host prefix: every request is refused, because the
// public repository does not hold them (its upstream says so).
func TestAttackPrivateContentByDigestThroughPublicRepository(t *testing.T) {
	t.Parallel()
	e := newAttackEnv(t)
	private, err := e.hub.PushIndex("library/node", "10", registrytest.ImageOptions{Layers: 2, LayerSize: 4096, Seed: 41})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.hub.PushIndex("team/app", "1", registrytest.ImageOptions{Layers: 1, LayerSize: 4096, Seed: 42}); err != nil {
		t.Fatal(err)
	}
	e.pullAsUser(t, "library/node", private)

	var paths []string
	for _, p := range contentPaths("team/app", private) {
		paths = append(paths, "/v2/"+p, "/v2/"+p+"?ns=docker.io", "/v2/docker.io/"+p, "/v2/registry-1.docker.io/"+p)
	}
	e.assertRefused(t, paths)
	// The private repository itself stays refused to anonymous clients.
	e.assertRefused(t, prefixed("/v2/", contentPaths("library/node", private)))
	// The logged-in client may read what it may read anyway, under any name.
	if got := e.do(t, http.MethodGet, "/v2/"+contentPaths("team/app", private)[0], true); got.status != http.StatusOK {
		t.Fatalf("logged-in read of content it may read = %d %s", got.status, got.body)
	}
}

func prefixed(prefix string, paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = prefix + p
	}
	return out
}

// A hostile upstream answers 200 to every blob request and claims the
// digest of a private manifest for its tags. Neither confirms anything:
// only bytes that hash to a digest do. Pushed content in a hosted
// repository that needs a login is just as safe from it.
func TestAttackHostileUpstreamClaimsCachedDigests(t *testing.T) {
	t.Parallel()
	e := newAttackEnv(t)
	private, err := e.hub.PushIndex("library/node", "10", registrytest.ImageOptions{Layers: 1, LayerSize: 4096, Seed: 43})
	if err != nil {
		t.Fatal(err)
	}
	e.pullAsUser(t, "library/node", private)
	e.hostileDigest.Store(private.Descriptor.Digest.String())

	pushed := randomImage(t)
	auth := authn.FromConfig(authn.AuthConfig{Username: pushUser, Password: pushPassword})
	host := strings.TrimPrefix(e.server.URL, "http://")
	if err := remote.Write(mustRef(t, host+"/secret/app:1"), pushed, remote.WithAuth(auth)); err != nil {
		t.Fatal(err)
	}
	layers, err := pushed.Layers()
	if err != nil {
		t.Fatal(err)
	}
	pushedLayer, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}

	paths := append(prefixed("/v2/", contentPaths(hostileHost+"/x/y", private)),
		"/v2/"+hostileHost+"/x/y/manifests/latest",
		"/v2/"+hostileHost+"/x/y/blobs/"+pushedLayer.String(),
		"/v2/team/app/blobs/"+pushedLayer.String(),
	)
	// Twice: a refusal must not leave anything behind that a retry uses.
	e.assertRefused(t, paths)
	e.assertRefused(t, paths)
	if e.hostileCalls.Load() == 0 {
		t.Fatal("the hostile upstream was never asked: the test proves nothing")
	}
}

// An anonymous client reads a public repository's content by digest. When
// the upstream makes the repository private, the mirror's answer about it
// is renewed within the hour and reads by digest stop.
func TestAttackDigestReadsFollowUpstreamVisibility(t *testing.T) {
	t.Parallel()
	e := newAttackEnv(t)
	ix, err := e.hub.PushIndex("team/app", "1", registrytest.ImageOptions{Layers: 1, LayerSize: 4096, Seed: 44})
	if err != nil {
		t.Fatal(err)
	}
	paths := prefixed("/v2/", contentPaths("team/app", ix))
	for _, p := range paths {
		if got := e.do(t, http.MethodGet, p, false); got.status != http.StatusOK {
			t.Fatalf("anonymous GET %s of public content = %d %s", p, got.status, got.body)
		}
	}
	e.hubPrivate.Store(true)
	e.clock.Advance(2 * time.Hour)
	e.assertRefused(t, paths)
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}
