package mirror_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
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
	// hostileBlob, when set, answers the hostile upstream's blob requests.
	hostileBlob atomic.Pointer[http.HandlerFunc]
	store       *cache.Store
	server      *httptest.Server
	clock       *testclock.Clock
}

func newAttackEnv(t *testing.T) *attackEnv {
	t.Helper()
	return newAttackEnvHosting(t, mirror.HostedOptions{Repositories: []string{"secret/**"}, PrivatePulls: true})
}

// Users of the attack fixtures besides the mirror's own (pushUser): two
// teams' members.
const (
	alice, alicePassword = "alice", "alice-password"
	bob, bobPassword     = "bob", "bob-password"
)

// newAttackEnvHosting is newAttackEnv with hosted repositories as hosting
// says; its users are pushUser, alice and bob.
func newAttackEnvHosting(t *testing.T, hosting mirror.HostedOptions) *attackEnv {
	t.Helper()
	return newAttackEnvSharing(t, hosting, nil)
}

// newAttackEnvSharing is newAttackEnvHosting for a replica sharing bucket
// with others, its cache copying what it downloads there as the daemon's
// does; nil is none.
func newAttackEnvSharing(t *testing.T, hosting mirror.HostedOptions, bucket mirror.Bucket) *attackEnv {
	t.Helper()
	e := &attackEnv{clock: testclock.New(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC))}
	e.hostileDigest.Store("")
	e.hub = registrytest.New(t, registrytest.Options{
		Username: hubUser, Password: hubPassword, Private: []string{"library/*"},
		IsPrivate: func(repo string) bool { return repo == "team/app" && e.hubPrivate.Load() },
	})
	hostile := httptest.NewServer(http.HandlerFunc(e.serveHostile))
	t.Cleanup(hostile.Close)

	opts := cache.Options{Dir: t.TempDir(), Now: e.clock.Now}
	if shared, ok := bucket.(cache.SharedBlobs); ok {
		opts.Shared = shared // as the daemon wires its bucket
	}
	store, err := cache.Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	hosted, err := store.Hosted(cache.HostedOptions{UploadTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	var htpasswd strings.Builder
	for user, password := range map[string]string{pushUser: pushPassword, alice: alicePassword, bob: bobPassword} {
		hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		htpasswd.WriteString(user + ":" + string(hash) + "\n")
	}
	users, err := mirror.ParseHtpasswd(strings.NewReader(htpasswd.String()))
	if err != nil {
		t.Fatal(err)
	}
	hosting.Store, hosting.Users = hosted, users
	m, err := mirror.New(mirror.Options{
		Cache:   store,
		Remotes: []mirror.Remote{e.remote(t, "docker.io", e.hub.URL(), true), e.remote(t, hostileHost, hostile.URL, false)},
		Now:     e.clock.Now,
		Hosted:  &hosting,
		Bucket:  bucket,
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
	case strings.Contains(r.URL.Path, "/blobs/") && e.hostileBlob.Load() != nil:
		(*e.hostileBlob.Load())(w, r)
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
// loggedIn is set, anonymously otherwise.
func (e *attackEnv) do(t *testing.T, method, path string, loggedIn bool) response {
	t.Helper()
	var header http.Header
	if loggedIn {
		header = basicAuth(pushUser, pushPassword)
	}
	return e.send(t, method, path, nil, header)
}

func basicAuth(user, password string) http.Header {
	req, _ := http.NewRequest(http.MethodGet, "/", nil)
	req.SetBasicAuth(user, password)
	return req.Header
}

// send sends a request with body and header to the mirror.
func (e *attackEnv) send(t *testing.T, method, path string, body []byte, header http.Header) response {
	t.Helper()
	return roundTrip(t, e.server, method, path, bytes.NewReader(body), header)
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

// pushAs pushes img to ref (a name on the mirror) with go-containerregistry,
// logged in as user, and returns the error.
func (e *attackEnv) pushAs(t *testing.T, ref string, img v1.Image, user, password string) error {
	t.Helper()
	host := strings.TrimPrefix(e.server.URL, "http://")
	auth := authn.FromConfig(authn.AuthConfig{Username: user, Password: password})
	return remote.Write(mustRef(t, host+"/"+ref), img, remote.WithAuth(auth))
}

// With only users configured, nothing can be pushed: not a proxied name
// that anonymous clients pull (which a push would shadow for everyone),
// not any other. The proxied image stays the upstream's.
func TestAttackPushShadowsProxiedImage(t *testing.T) {
	t.Parallel()
	e := newAttackEnvHosting(t, mirror.HostedOptions{})
	up, err := e.hub.PushImage("team/app", "1", registrytest.ImageOptions{Layers: 1, LayerSize: 1024, Seed: 45})
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"team/app:1", "library/node:latest", "node:latest", "docker.io/team/app:1"} {
		err := e.pushAs(t, ref, randomImage(t), alice, alicePassword)
		if err == nil || !strings.Contains(err.Error(), "DENIED") {
			t.Errorf("push %s with no hosted repositories listed = %v, want DENIED", ref, err)
		}
	}
	got := e.do(t, http.MethodHead, "/v2/team/app/manifests/1", false)
	if d := got.header.Get("Docker-Content-Digest"); got.status != http.StatusOK || d != up.Manifest.Digest.String() {
		t.Fatalf("team/app:1 after the pushes = %d %s, want the upstream's %s", got.status, d, up.Manifest.Digest)
	}
}

// A hosted name is never looked up upstream unless the operator says so:
// whoever registers the same name on Docker Hub cannot serve a new tag, a
// manifest or a blob under it here.
func TestAttackHostedNameFallsThroughToUpstream(t *testing.T) {
	t.Parallel()
	e := newAttackEnvHosting(t, mirror.HostedOptions{Repositories: []string{"team/**"}})
	if err := e.pushAs(t, "team/app:1", randomImage(t), alice, alicePassword); err != nil {
		t.Fatal(err)
	}
	squatted, err := e.hub.PushImage("team/app", "2", registrytest.ImageOptions{Layers: 1, LayerSize: 1024, Seed: 46})
	if err != nil {
		t.Fatal(err)
	}
	e.hub.Reset()
	paths := []string{
		"/v2/team/app/manifests/2",
		"/v2/team/app/manifests/" + squatted.Manifest.Digest.String(),
		"/v2/team/app/blobs/" + squatted.Layers[0].Digest.String(),
	}
	e.assertRefused(t, paths)
	got := e.do(t, http.MethodGet, "/v2/team/app/tags/list", false)
	if got.status != http.StatusOK || strings.Contains(string(got.body), `"2"`) {
		t.Fatalf("tags of the hosted repository = %d %s, want its own only", got.status, got.body)
	}
	asked := e.hub.CountRequests(func(r registrytest.Request) bool { return r.Repo == "team/app" })
	if asked != 0 {
		t.Fatalf("%d upstream requests for the hosted name team/app, want 0", asked)
	}
}

// teamsHosting hosts two teams' repositories: team-a/** pulled by anyone,
// pushed and deleted by group a (alice); team-b/** pulled and pushed by
// group b (bob) only.
func teamsHosting() mirror.HostedOptions {
	return mirror.HostedOptions{
		Repositories: []string{"team-a/**", "team-b/**"},
		Groups:       map[string][]string{"a": {alice}, "b": {bob}},
		Permissions: []mirror.Permission{
			{Repositories: []string{"team-a/**"}, Groups: []string{"a"}, Actions: []mirror.Action{mirror.ActionPull, mirror.ActionPush, mirror.ActionDelete}},
			{Repositories: []string{"team-a/**"}, Anonymous: true, Actions: []mirror.Action{mirror.ActionPull}},
			{Repositories: []string{"team-b/**"}, Groups: []string{"b"}, Actions: []mirror.Action{mirror.ActionPull, mirror.ActionPush}},
		},
		AllowDelete: true,
	}
}

// A logged-in user of another team can neither push to, delete from, nor
// (where pulls are not public) read a team's repositories, by Basic
// credentials or by a token that asked for more than it was granted; the
// catalog lists only what the client may pull.
func TestAttackUserOfAnotherTeam(t *testing.T) {
	t.Parallel()
	e := newAttackEnvHosting(t, teamsHosting())
	img := randomImage(t)
	if err := e.pushAs(t, "team-a/app:1", img, alice, alicePassword); err != nil {
		t.Fatalf("alice pushing to her team's repository: %v", err)
	}
	if err := e.pushAs(t, "team-b/app:1", img, bob, bobPassword); err != nil {
		t.Fatalf("bob pushing to his team's repository: %v", err)
	}
	if err := e.pushAs(t, "team-a/app:2", randomImage(t), bob, bobPassword); err == nil || !strings.Contains(err.Error(), "DENIED") {
		t.Errorf("bob pushing to team-a = %v, want DENIED", err)
	}
	d := imageDigest(t, img).String()
	token := e.token(t, bob, bobPassword, "repository:team-a/app:pull,push,delete")
	tests := []struct {
		name, method, path string
		header             http.Header
		want               int
	}{
		{"bob deletes team-a's manifest", http.MethodDelete, "/v2/team-a/app/manifests/" + d, basicAuth(bob, bobPassword), http.StatusForbidden},
		{"bob deletes team-a's tag", http.MethodDelete, "/v2/team-a/app/manifests/1", basicAuth(bob, bobPassword), http.StatusForbidden},
		{"bob's token uploads to team-a", http.MethodPost, "/v2/team-a/app/blobs/uploads/", bearer(token), http.StatusForbidden},
		{"bob's token deletes in team-a", http.MethodDelete, "/v2/team-a/app/manifests/" + d, bearer(token), http.StatusForbidden},
		{"alice reads team-b", http.MethodGet, "/v2/team-b/app/manifests/1", basicAuth(alice, alicePassword), http.StatusForbidden},
		{"anonymous reads team-b", http.MethodGet, "/v2/team-b/app/manifests/" + d, nil, http.StatusUnauthorized},
		{"anonymous HEADs team-b", http.MethodHead, "/v2/team-b/app/manifests/1", nil, http.StatusUnauthorized},
		{"alice deletes in team-b", http.MethodDelete, "/v2/team-b/app/manifests/1", basicAuth(alice, alicePassword), http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := e.send(t, tt.method, tt.path, nil, tt.header); got.status != tt.want {
				t.Errorf("%s %s = %d %s, want %d", tt.method, tt.path, got.status, got.body, tt.want)
			}
		})
	}
	for who, want := range map[string]string{"": `["team-a/app"]`, bob: `["team-a/app","team-b/app"]`} {
		header := http.Header(nil)
		if who == bob {
			header = basicAuth(bob, bobPassword)
		}
		got := e.send(t, http.MethodGet, "/v2/_catalog", nil, header)
		if !strings.Contains(string(got.body), `"repositories":`+want) {
			t.Errorf("catalog for %q = %d %s, want %s", who, got.status, got.body, want)
		}
	}
	if got := e.send(t, http.MethodGet, "/v2/team-a/app/manifests/1", nil, nil); got.status != http.StatusOK {
		t.Fatalf("team-a/app:1 after bob's attempts = %d, want it still there", got.status)
	}
}

func bearer(token string) http.Header { return http.Header{"Authorization": {"Bearer " + token}} }

// token fetches a token for scope from the mirror's token endpoint.
func (e *attackEnv) token(t *testing.T, user, password, scope string) string {
	t.Helper()
	got := e.send(t, http.MethodGet, "/v2/token?service=regmirror&scope="+scope, nil, basicAuth(user, password))
	var tok struct{ Token string }
	if err := json.Unmarshal(got.body, &tok); err != nil || tok.Token == "" {
		t.Fatalf("token for %s = %d %s", scope, got.status, got.body)
	}
	return tok.Token
}

// A user may mount a blob only from a repository that holds it and that
// the user may read, and may push a manifest only of content its
// repository holds: a digest alone brings nothing into a repository
// anonymous clients pull. (A logged-in user may mount what they may read,
// a private upstream layer included, as they could pull and push it.)
func TestAttackMountAndManifestOfContentNotHeld(t *testing.T) {
	t.Parallel()
	e := newAttackEnvHosting(t, teamsHosting())
	private, err := e.hub.PushIndex("library/node", "10", registrytest.ImageOptions{Layers: 1, LayerSize: 4096, Seed: 47})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.hub.PushIndex("team/app", "1", registrytest.ImageOptions{Layers: 1, LayerSize: 4096, Seed: 48}); err != nil {
		t.Fatal(err)
	}
	e.pullAsUser(t, "library/node", private)
	secret := randomImage(t)
	if err := e.pushAs(t, "team-b/secret:1", secret, bob, bobPassword); err != nil {
		t.Fatal(err)
	}
	privateLayer := private.Images[0].Layers[0].Digest.String()
	secretLayer := layerDigest(t, secret, 0)

	aliceAuth := basicAuth(alice, alicePassword)
	for _, mount := range []struct{ digest, from string }{
		{privateLayer, "team/app"},               // a proxied repository that does not hold it
		{privateLayer, "team-a/app"},             // a hosted repository that does not hold it
		{secretLayer, "team-b/secret"},           // holds it, but alice may not read it
		{secretLayer, "docker.io/x/y"},           // nothing holds it there
		{privateLayer, "evil.test/x/y"},          // a hostile upstream's name
		{secretLayer, "team-b/../team-b/secret"}, // not a repository name at all
		{secretLayer, ""},                        // an anonymous mount: nothing alice may read holds it
	} {
		got := e.send(t, http.MethodPost, "/v2/team-a/app/blobs/uploads/?mount="+mount.digest+"&from="+mount.from, nil, aliceAuth)
		if got.status == http.StatusCreated {
			t.Errorf("alice mounted %s from %s into team-a/app", mount.digest, mount.from)
		}
	}
	manifest := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":%q,"size":1},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":%q,"size":1}]}`,
		registrytest.MediaTypeDockerManifest, secretLayer, privateLayer)
	header := basicAuth(alice, alicePassword)
	header.Set("Content-Type", registrytest.MediaTypeDockerManifest)
	if got := e.send(t, http.MethodPut, "/v2/team-a/app/manifests/stolen", []byte(manifest), header); got.status < 400 {
		t.Errorf("a manifest naming content team-a/app does not hold was accepted: %d", got.status)
	}
	e.assertRefused(t, []string{
		"/v2/team-a/app/blobs/" + privateLayer,
		"/v2/team-a/app/blobs/" + secretLayer,
		"/v2/team-a/app/manifests/stolen",
	})
}

func layerDigest(t *testing.T, img v1.Image, i int) string {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	d, err := layers[i].Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// clientFrom returns an HTTP client whose connections come from the
// loopback address local, so that the mirror sees another client.
func clientFrom(local string) *http.Client {
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	return &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}}
}

// An anonymous client inventing tags makes the mirror ask the upstream for
// each, burning the mirror's quota there: past its burst it is refused
// with 503 and Retry-After (never 429, which would stop a docker daemon's
// pulls for good), while cache hits, and other clients, are served. Its
// bucket refills with time.
func TestAttackInventedNamesBurnUpstreamQuota(t *testing.T) {
	t.Parallel()
	const burst = 20
	e := newEnv(t, envOptions{missLimits: mirror.MissLimits{PerClientRate: 1, PerClientBurst: burst}})
	ix := e.pushNode(t, 1, 1024)
	attacker, other := clientFrom("127.0.0.2"), clientFrom("127.0.0.3")
	get := func(c *http.Client, path string) *http.Response {
		t.Helper()
		resp, err := c.Get(e.mirror.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	cached := "/v2/library/node/manifests/" + ix.Descriptor.Digest.String()
	if resp := get(other, cached); resp.StatusCode != http.StatusOK {
		t.Fatalf("first pull = %d", resp.StatusCode)
	}
	e.upstream.Reset()

	refused := 0
	for i := range 100 {
		resp := get(attacker, fmt.Sprintf("/v2/library/node/manifests/invented-%d", i))
		switch resp.StatusCode {
		case http.StatusNotFound:
		case http.StatusServiceUnavailable:
			refused++
			if resp.Header.Get("Retry-After") == "" {
				t.Fatal("a refusal without Retry-After")
			}
		default:
			t.Fatalf("invented tag %d = %d, want 404 or 503", i, resp.StatusCode)
		}
	}
	heads := e.upstream.CountRequests(func(r registrytest.Request) bool { return r.Kind == registrytest.KindManifest })
	if refused == 0 || heads > burst {
		t.Fatalf("100 invented tags: %d refused, %d upstream manifest requests; want refusals and at most %d", refused, heads, burst)
	}
	if resp := get(attacker, cached); resp.StatusCode != http.StatusOK {
		t.Fatalf("a cache hit for the limited client = %d, want 200", resp.StatusCode)
	}
	if resp := get(other, "/v2/library/node/manifests/invented-by-other"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("another client's miss = %d, want 404 from the upstream", resp.StatusCode)
	}
	e.clock.Advance(10 * time.Second)
	if resp := get(attacker, "/v2/library/node/manifests/later"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("the limited client's miss after its bucket refilled = %d, want 404", resp.StatusCode)
	}
	t.Logf("100 invented tags from one client: %d refused, %d reached the upstream", refused, heads)
}
