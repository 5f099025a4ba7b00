package mirror_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
	"golang.org/x/crypto/bcrypt"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/credentials"
	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/internal/testclock"
	"github.com/regmirror/regmirror/mirror"
	"github.com/regmirror/regmirror/upstream"
)

// The mirror's own user, who may push.
const (
	pushUser     = "ci-bot"
	pushPassword = "push-secret"
)

// hostedEnv is a mirror with hosted repositories in front of a
// Docker-Hub-like upstream. Its data directory outlives restart.
type hostedEnv struct {
	hub    *registrytest.Registry
	dir    string
	clock  *testclock.Clock
	opts   mirror.HostedOptions
	store  *cache.Store
	hosted *cache.Hosted
	mirror *mirror.Mirror
	server *httptest.Server
}

func newHostedEnv(t *testing.T, opts mirror.HostedOptions) *hostedEnv {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(pushPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	users, err := mirror.ParseHtpasswd(strings.NewReader(pushUser + ":" + string(hash) + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	opts.Users = users
	e := &hostedEnv{
		hub:   registrytest.New(t, registrytest.Options{}),
		dir:   t.TempDir(),
		clock: testclock.New(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)),
		opts:  opts,
	}
	e.start(t)
	return e
}

// start opens the data directory and serves the mirror.
func (e *hostedEnv) start(t *testing.T) {
	t.Helper()
	store, err := cache.Open(context.Background(), cache.Options{Dir: e.dir, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	hosted, err := store.Hosted(cache.HostedOptions{UploadTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := credentials.New(credentials.Config{})
	if err != nil {
		t.Fatal(err)
	}
	client, err := upstream.New(upstream.Config{Host: "docker.io", URL: e.hub.URL()}, keys, upstream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	opts := e.opts
	opts.Store = hosted
	m, err := mirror.New(mirror.Options{
		Cache:   store,
		Remotes: []mirror.Remote{{Host: "docker.io", Upstream: client}},
		Now:     e.clock.Now,
		Hosted:  &opts,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.store, e.hosted, e.mirror, e.server = store, hosted, m, httptest.NewServer(m)
	t.Cleanup(e.stop)
}

func (e *hostedEnv) stop() {
	e.server.Close()
	e.store.Close()
}

// restart stops the daemon, as a crash or an upgrade does, and starts it
// again on the same data directory.
func (e *hostedEnv) restart(t *testing.T) {
	t.Helper()
	e.stop()
	e.start(t)
}

func (e *hostedEnv) host() string { return strings.TrimPrefix(e.server.URL, "http://") }

// hostedResponse is an answer of the mirror, body read.
type hostedResponse struct {
	status int
	header http.Header
	body   []byte
}

func (r hostedResponse) errorCode() string {
	var body struct {
		Errors []struct{ Code string } `json:"errors"`
	}
	if json.Unmarshal(r.body, &body) != nil || len(body.Errors) == 0 {
		return ""
	}
	return body.Errors[0].Code
}

// send makes a request to the mirror; user "" sends no credentials.
func (e *hostedEnv) send(t *testing.T, method, path string, body io.Reader, header http.Header, user, password string) hostedResponse {
	t.Helper()
	req, err := http.NewRequest(method, e.server.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	resp, err := e.server.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	return hostedResponse{status: resp.StatusCode, header: resp.Header, body: data}
}

// push sends an upload or delete as the mirror's user.
func (e *hostedEnv) push(t *testing.T, method, path string, body []byte, header http.Header) hostedResponse {
	t.Helper()
	return e.send(t, method, path, bytes.NewReader(body), header, pushUser, pushPassword)
}

func (e *hostedEnv) ref(t *testing.T, s string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(e.host()+"/"+s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// pushImage pushes img with go-containerregistry, a real client of the
// push protocol, logged in as the mirror's user.
func (e *hostedEnv) pushImage(t *testing.T, ref string, img v1.Image) {
	t.Helper()
	auth := authn.FromConfig(authn.AuthConfig{Username: pushUser, Password: pushPassword})
	if err := remote.Write(e.ref(t, ref), img, remote.WithAuth(auth)); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

// pullDigest pulls ref anonymously, every blob included, and returns the
// manifest's digest.
func (e *hostedEnv) pullDigest(t *testing.T, ref string) v1.Hash {
	t.Helper()
	img, err := remote.Image(e.ref(t, ref))
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			t.Fatalf("pull %s: layer: %v", ref, err)
		}
		if err := rc.Close(); err != nil { // verifies the digest
			t.Fatalf("pull %s: layer: %v", ref, err)
		}
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func randomImage(t *testing.T) v1.Image {
	t.Helper()
	img, err := random.Image(2048, 2)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func imageDigest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestPushesNeedCredentials: every write without valid credentials gets a
// Basic challenge, which is what makes docker send the credentials of
// `docker login`; pulls of proxied names never depend on credentials.
func TestPushesNeedCredentials(t *testing.T) {
	t.Parallel()
	e := newHostedEnv(t, mirror.HostedOptions{Repositories: []string{"team/*"}, AllowDelete: true})
	img, err := e.hub.PushImage("library/node", "10", registrytest.ImageOptions{Layers: 1, LayerSize: 512})
	if err != nil {
		t.Fatal(err)
	}
	d := digest.FromString("x")
	writes := []struct{ method, path string }{
		{http.MethodPost, "/v2/team/app/blobs/uploads/"},
		{http.MethodPatch, "/v2/team/app/blobs/uploads/0123456789abcdef0123456789abcdef"},
		{http.MethodPut, "/v2/team/app/blobs/uploads/0123456789abcdef0123456789abcdef?digest=" + d.String()},
		{http.MethodGet, "/v2/team/app/blobs/uploads/0123456789abcdef0123456789abcdef"},
		{http.MethodPut, "/v2/team/app/manifests/1"},
		{http.MethodDelete, "/v2/team/app/manifests/1"},
		{http.MethodDelete, "/v2/team/app/blobs/" + d.String()},
	}
	creds := []struct{ name, user, password string }{
		{"no credentials", "", ""},
		{"wrong password", pushUser, "guess"},
		{"unknown user", "mallory", pushPassword},
	}
	for _, w := range writes {
		for _, c := range creds {
			t.Run(w.method+" "+w.path+" "+c.name, func(t *testing.T) {
				t.Parallel()
				r := e.send(t, w.method, w.path, nil, nil, c.user, c.password)
				if r.status != http.StatusUnauthorized || r.errorCode() != "UNAUTHORIZED" {
					t.Fatalf("status %d %s, want 401 UNAUTHORIZED", r.status, r.body)
				}
				if got := r.header.Get("WWW-Authenticate"); got != `Basic realm="regmirror"` {
					t.Fatalf("WWW-Authenticate = %q, want a Basic challenge", got)
				}
			})
		}
	}
	t.Run("proxied pull with wrong credentials", func(t *testing.T) {
		t.Parallel()
		r := e.send(t, http.MethodGet, "/v2/library/node/manifests/10", nil, nil, pushUser, "guess")
		if r.status != http.StatusOK || r.header.Get("Docker-Content-Digest") != img.Manifest.Digest.String() {
			t.Fatalf("status %d, digest %q: a failed login must not lock out proxied pulls", r.status, r.header.Get("Docker-Content-Digest"))
		}
	})
	t.Run("ping with credentials", func(t *testing.T) {
		t.Parallel()
		if r := e.send(t, http.MethodGet, "/v2/", nil, nil, pushUser, pushPassword); r.status != http.StatusOK {
			t.Fatalf("status %d, want 200", r.status)
		}
	})
}

// TestPingChallengeAndTokens: the ping's Bearer challenge leads to the
// token endpoint, which gives anyone a token that pulls (so a dockerd
// pulling through the mirror never falls back to Docker Hub) and only a
// user a token that pushes, to the repository it was asked for.
func TestPingChallengeAndTokens(t *testing.T) {
	t.Parallel()
	e := newHostedEnv(t, mirror.HostedOptions{Repositories: []string{"team/*"}})
	r := e.send(t, http.MethodGet, "/v2/", nil, nil, "", "")
	realm := "http://" + e.host() + "/v2/token"
	if want := `Bearer realm="` + realm + `",service="regmirror"`; r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") != want {
		t.Fatalf("ping = %d, WWW-Authenticate %q; want 401, %s", r.status, r.header.Get("WWW-Authenticate"), want)
	}
	pullScope := "?service=regmirror&scope=repository:library/node:pull"
	pushScope := "?service=regmirror&scope=repository:team/app:pull,push"
	login := "?service=regmirror&offline_token=true&client_id=docker"
	tests := []struct {
		name           string
		query          string
		user, password string
		wantStatus     int
		wantPush       bool // the token authorizes pushes
	}{
		{"anonymous pull", pullScope, "", "", http.StatusOK, false},
		{"pull with another registry's credentials", pullScope, "hub-user", "hub-password", http.StatusOK, false},
		{"push as the user", pushScope, pushUser, pushPassword, http.StatusOK, true},
		{"push with a wrong password", pushScope, pushUser, "guess", http.StatusUnauthorized, false},
		// docker login asks for no scope: its token proves the password and
		// grants nothing; docker asks for a push token before it pushes.
		{"docker login", login, pushUser, pushPassword, http.StatusOK, false},
		{"pull scope as the user", "?service=regmirror&scope=repository:team/app:pull", pushUser, pushPassword, http.StatusOK, false},
		{"push scope of another repository", "?service=regmirror&scope=repository:team/other:pull,push", pushUser, pushPassword, http.StatusOK, false},
		{"docker login with a wrong password", login, pushUser, "guess", http.StatusUnauthorized, false},
		{"anonymous push", pushScope, "", "", http.StatusOK, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := e.send(t, http.MethodGet, "/v2/token"+tt.query, nil, nil, tt.user, tt.password)
			if r.status != tt.wantStatus {
				t.Fatalf("token = %d %s, want %d", r.status, r.body, tt.wantStatus)
			}
			if r.status != http.StatusOK {
				return
			}
			var tok struct{ Token string }
			if err := json.Unmarshal(r.body, &tok); err != nil || tok.Token == "" {
				t.Fatalf("token body %s: %v", r.body, err)
			}
			bearer := http.Header{"Authorization": {"Bearer " + tok.Token}}
			if r := e.send(t, http.MethodGet, "/v2/", nil, bearer, "", ""); r.status != http.StatusOK {
				t.Errorf("ping with the token = %d, want 200", r.status)
			}
			r = e.send(t, http.MethodPost, "/v2/team/app/blobs/uploads/", nil, bearer, "", "")
			if pushed := r.status == http.StatusAccepted; pushed != tt.wantPush {
				t.Errorf("upload with the token = %d, want push allowed: %v", r.status, tt.wantPush)
			}
		})
	}
	t.Run("forged token", func(t *testing.T) {
		t.Parallel()
		forged := http.Header{"Authorization": {"Bearer " + "MTk5OTk5OTk5OTpjaS1ib3Q.c2ln"}}
		if r := e.send(t, http.MethodPost, "/v2/team/app/blobs/uploads/", nil, forged, "", ""); r.status != http.StatusUnauthorized {
			t.Fatalf("upload with a forged token = %d, want 401", r.status)
		}
	})
}

// TestHostedRepositoryIsAGroup: with fall-through, a pushed image is pulled
// from the same URL; a pushed tag shadows the upstream's, other tags still
// come from upstream, and the tag list merges both.
func TestHostedRepositoryIsAGroup(t *testing.T) {
	t.Parallel()
	e := newHostedEnv(t, mirror.HostedOptions{Repositories: []string{"team/*"}, FallThrough: []string{"team/*"}})
	hub1, err := e.hub.PushImage("team/app", "1", registrytest.ImageOptions{Layers: 1, LayerSize: 512, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	hub2, err := e.hub.PushImage("team/app", "2", registrytest.ImageOptions{Layers: 1, LayerSize: 512, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got := e.pullDigest(t, "team/app:1"); got.String() != hub1.Manifest.Digest.String() {
		t.Fatalf("before the push, team/app:1 = %s, want the upstream's %s", got, hub1.Manifest.Digest)
	}

	mine := randomImage(t)
	e.pushImage(t, "team/app:1", mine)
	e.pushImage(t, "team/app:3", mine)

	tests := []struct {
		ref  string
		want string
	}{
		{"team/app:1", imageDigest(t, mine).String()}, // hosted shadows upstream
		{"team/app:2", hub2.Manifest.Digest.String()}, // only upstream has it
		{"team/app:3", imageDigest(t, mine).String()}, // only hosted has it
		{"team/app@" + imageDigest(t, mine).String(), imageDigest(t, mine).String()},
	}
	for _, tt := range tests {
		if got := e.pullDigest(t, tt.ref); got.String() != tt.want {
			t.Errorf("pull %s = %s, want %s", tt.ref, got, tt.want)
		}
	}

	r := e.send(t, http.MethodGet, "/v2/team/app/tags/list", nil, nil, "", "")
	var list struct{ Tags []string }
	if err := json.Unmarshal(r.body, &list); err != nil || r.status != http.StatusOK {
		t.Fatalf("tags/list: %d %s", r.status, r.body)
	}
	if got := strings.Join(list.Tags, ","); got != "1,2,3" {
		t.Fatalf("tags = %s, want 1,2,3 (hosted and upstream merged)", got)
	}
	r = e.send(t, http.MethodGet, "/v2/team/app/tags/list?n=2", nil, nil, "", "")
	if !strings.Contains(r.header.Get("Link"), "last=2") {
		t.Fatalf("first page of two: Link %q, want a next link after 2", r.header.Get("Link"))
	}
}

// TestPushedContentIsNotReadableThroughOtherNames: with private pulls, the
// layers of a private repository cannot be read anonymously through a
// proxied name by digest, nor through its own name.
func TestPushedContentIsNotReadableThroughOtherNames(t *testing.T) {
	t.Parallel()
	e := newHostedEnv(t, mirror.HostedOptions{Repositories: []string{"team/*"}, PrivatePulls: true})
	img := randomImage(t)
	e.pushImage(t, "team/secret:1", img)
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	layer, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{
		"/v2/library/node/blobs/" + layer.String(),
		"/v2/other/app/blobs/" + layer.String(),
		"/v2/library/node/manifests/" + imageDigest(t, img).String(),
	} {
		if r := e.send(t, http.MethodGet, path, nil, nil, "", ""); r.status != http.StatusNotFound {
			t.Errorf("anonymous GET %s = %d, want 404", path, r.status)
		}
	}
	r := e.send(t, http.MethodGet, "/v2/team/secret/blobs/"+layer.String(), nil, nil, "", "")
	if r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") == "" {
		t.Fatalf("anonymous pull of a private hosted repository = %d, want a 401 challenge", r.status)
	}
	if r := e.send(t, http.MethodGet, "/v2/team/secret/blobs/"+layer.String(), nil, nil, pushUser, pushPassword); r.status != http.StatusOK {
		t.Fatalf("pull with credentials = %d, want 200", r.status)
	}
}

// TestChunkedUploadResumesAfterRestart: a chunked upload whose connection
// drops midway, and whose daemon then restarts, resumes from what the
// upload status reports, and the blob it completes is intact.
func TestChunkedUploadResumesAfterRestart(t *testing.T) {
	t.Parallel()
	e := newHostedEnv(t, mirror.HostedOptions{Repositories: []string{"team/*"}})
	blob := make([]byte, 300<<10)
	rand.Read(blob)
	d := digest.FromBytes(blob)

	r := e.push(t, http.MethodPost, "/v2/team/app/blobs/uploads/", nil, nil)
	if r.status != http.StatusAccepted {
		t.Fatalf("POST = %d %s", r.status, r.body)
	}
	loc := r.header.Get("Location")
	first := blob[:100<<10]
	r = e.push(t, http.MethodPatch, loc, first, http.Header{"Content-Range": {fmt.Sprintf("0-%d", len(first)-1)}})
	if r.status != http.StatusAccepted || r.header.Get("Range") != fmt.Sprintf("0-%d", len(first)-1) {
		t.Fatalf("first chunk: %d, Range %q", r.status, r.header.Get("Range"))
	}

	// The second chunk's connection drops after 64 KiB of its 200 KiB.
	second := blob[len(first):]
	e.patchInterrupted(t, loc, len(first), second, 64<<10)
	e.restart(t)

	r = e.push(t, http.MethodGet, loc, nil, nil)
	if r.status != http.StatusNoContent {
		t.Fatalf("upload status after restart = %d %s", r.status, r.body)
	}
	var last int
	if _, err := fmt.Sscanf(r.header.Get("Range"), "0-%d", &last); err != nil {
		t.Fatalf("Range %q: %v", r.header.Get("Range"), err)
	}
	received := last + 1
	if received < len(first) || received > len(first)+64<<10 {
		t.Fatalf("after the interruption the upload holds %d bytes, want between %d and %d", received, len(first), len(first)+64<<10)
	}
	rest := blob[received:]
	r = e.push(t, http.MethodPatch, loc, rest, http.Header{"Content-Range": {fmt.Sprintf("%d-%d", received, len(blob)-1)}})
	if r.status != http.StatusAccepted {
		t.Fatalf("resumed chunk: %d %s", r.status, r.body)
	}
	r = e.push(t, http.MethodPut, loc+"?digest="+d.String(), nil, nil)
	if r.status != http.StatusCreated || r.header.Get("Docker-Content-Digest") != d.String() {
		t.Fatalf("PUT = %d %s", r.status, r.body)
	}
	got := e.send(t, http.MethodGet, r.header.Get("Location"), nil, nil, "", "")
	if got.status != http.StatusOK || !bytes.Equal(got.body, blob) {
		t.Fatalf("GET the blob = %d, %d bytes; want the %d bytes uploaded", got.status, len(got.body), len(blob))
	}
}

// patchInterrupted sends a chunk whose body fails after cut bytes, as a
// client losing its connection does.
func (e *hostedEnv) patchInterrupted(t *testing.T, loc string, offset int, chunk []byte, cut int) {
	t.Helper()
	body := io.MultiReader(bytes.NewReader(chunk[:cut]), failingReader{})
	req, err := http.NewRequest(http.MethodPatch, e.server.URL+loc, body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = int64(len(chunk))
	req.Header.Set("Content-Range", fmt.Sprintf("%d-%d", offset, offset+len(chunk)-1))
	req.SetBasicAuth(pushUser, pushPassword)
	resp, err := e.server.Client().Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("the interrupted PATCH got an answer: %d", resp.StatusCode)
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("connection lost") }

// TestUploadValidation: what the push protocol refuses, and that a refused
// upload stores nothing.
func TestUploadValidation(t *testing.T) {
	t.Parallel()
	e := newHostedEnv(t, mirror.HostedOptions{Repositories: []string{"team/*"}})
	blob := []byte("some layer")
	d := digest.FromBytes(blob)
	wrong := digest.FromString("something else")

	tests := []struct {
		name       string
		method     string
		path       string
		body       []byte
		header     http.Header
		wantStatus int
		wantCode   string
	}{
		{"monolithic upload with a wrong digest", http.MethodPost, "/v2/team/app/blobs/uploads/?digest=" + wrong.String(), blob, nil,
			http.StatusBadRequest, "DIGEST_INVALID"},
		{"push to a name routed to another registry", http.MethodPost, "/v2/ghcr.io/org/app/blobs/uploads/", nil, nil,
			http.StatusForbidden, "DENIED"},
		{"push outside the hosted globs", http.MethodPost, "/v2/library/node/blobs/uploads/", nil, nil,
			http.StatusForbidden, "DENIED"},
		{"manifest naming a blob never pushed", http.MethodPut, "/v2/team/app/manifests/1",
			imageManifest(wrong), http.Header{"Content-Type": {"application/vnd.oci.image.manifest.v1+json"}},
			http.StatusBadRequest, "MANIFEST_BLOB_UNKNOWN"},
		{"manifest over 4 MiB", http.MethodPut, "/v2/team/app/manifests/1",
			bytes.Repeat([]byte(" "), 4<<20+1), http.Header{"Content-Type": {"application/vnd.oci.image.manifest.v1+json"}},
			http.StatusRequestEntityTooLarge, "MANIFEST_INVALID"},
		{"manifest pushed under another digest", http.MethodPut, "/v2/team/app/manifests/" + wrong.String(),
			imageManifest(d), http.Header{"Content-Type": {"application/vnd.oci.image.manifest.v1+json"}},
			http.StatusBadRequest, "DIGEST_INVALID"},
		{"delete while deletes are disabled", http.MethodDelete, "/v2/team/app/manifests/1", nil, nil,
			http.StatusMethodNotAllowed, "UNSUPPORTED"},
		{"unknown upload", http.MethodPatch, "/v2/team/app/blobs/uploads/0123456789abcdef0123456789abcdef", blob, nil,
			http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := e.push(t, tt.method, tt.path, tt.body, tt.header)
			if r.status != tt.wantStatus || r.errorCode() != tt.wantCode {
				t.Fatalf("%s %s = %d %s, want %d %s", tt.method, tt.path, r.status, r.body, tt.wantStatus, tt.wantCode)
			}
		})
	}
	t.Run("chunk out of order", func(t *testing.T) {
		t.Parallel()
		loc := e.push(t, http.MethodPost, "/v2/team/app/blobs/uploads/", nil, nil).header.Get("Location")
		r := e.push(t, http.MethodPatch, loc, blob, http.Header{"Content-Range": {fmt.Sprintf("5-%d", 5+len(blob)-1)}})
		if r.status != http.StatusRequestedRangeNotSatisfiable || r.header.Get("Range") != "0-0" || r.header.Get("Location") == "" {
			t.Fatalf("out-of-order chunk = %d, Range %q, Location %q; want 416 with the upload's progress",
				r.status, r.header.Get("Range"), r.header.Get("Location"))
		}
	})
	t.Run("a wrong digest stores nothing", func(t *testing.T) {
		t.Parallel()
		for _, dg := range []digest.Digest{d, wrong} {
			if r := e.send(t, http.MethodHead, "/v2/team/app/blobs/"+dg.String(), nil, nil, "", ""); r.status != http.StatusNotFound {
				t.Errorf("HEAD %s = %d, want 404", dg, r.status)
			}
			if rc, _, err := e.store.ReadBlob(context.Background(), dg, 0); err == nil {
				rc.Close()
				t.Errorf("the store holds %s", dg)
			}
		}
	})
}

func imageManifest(layer digest.Digest) []byte {
	return []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":2},`+
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":10}]}`, layer, layer))
}

// TestUploadSessionsExpire: an upload left idle past its TTL is refused,
// and ExpireUploads removes it.
func TestUploadSessionsExpire(t *testing.T) {
	t.Parallel()
	e := newHostedEnv(t, mirror.HostedOptions{Repositories: []string{"team/*"}})
	loc := e.push(t, http.MethodPost, "/v2/team/app/blobs/uploads/", nil, nil).header.Get("Location")
	e.clock.Advance(2 * time.Hour) // the env's TTL is one hour
	if r := e.push(t, http.MethodGet, loc, nil, nil); r.status != http.StatusNotFound || r.errorCode() != "BLOB_UPLOAD_UNKNOWN" {
		t.Fatalf("status of an expired upload = %d %s, want 404 BLOB_UPLOAD_UNKNOWN", r.status, r.body)
	}
	e.push(t, http.MethodPost, "/v2/team/app/blobs/uploads/", nil, nil)
	e.clock.Advance(2 * time.Hour)
	n, err := e.hosted.ExpireUploads(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("ExpireUploads = %d, %v; want 1 session removed", n, err)
	}
}
