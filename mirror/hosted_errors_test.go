package mirror_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/crypto/bcrypt"

	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/internal/testclock"
	"github.com/regmirror/regmirror/mirror"
)

// newHostedEnvOver is newHostedEnv in front of an upstream started with hub.
func newHostedEnvOver(t *testing.T, opts mirror.HostedOptions, hub registrytest.Options) *hostedEnv {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(pushPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if opts.Users, err = mirror.ParseHtpasswd(strings.NewReader(pushUser + ":" + string(hash) + "\n")); err != nil {
		t.Fatal(err)
	}
	e := &hostedEnv{
		hub:   registrytest.New(t, hub),
		dir:   t.TempDir(),
		clock: testclock.New(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)),
		opts:  opts,
	}
	e.start(t)
	return e
}

// hostedMissPaths are requests for content an empty hosted repository
// team/app lacks, with the answer the distribution spec asks for.
func hostedMissPaths() []struct{ path, code string } {
	missing := digest.FromString("not pushed anywhere")
	return []struct{ path, code string }{
		{"/v2/team/app/blobs/" + missing.String(), "BLOB_UNKNOWN"},
		{"/v2/team/app/manifests/1", "MANIFEST_UNKNOWN"},
		{"/v2/team/app/manifests/" + missing.String(), "MANIFEST_UNKNOWN"},
		{"/v2/team/app/tags/list", "NAME_UNKNOWN"},
	}
}

// assertHostedNotFound checks that every request of hostedMissPaths gets
// 404 with its code, by GET and HEAD, sent by send.
func assertHostedNotFound(t *testing.T, send func(method, path string) hostedResponse) {
	t.Helper()
	for _, tt := range hostedMissPaths() {
		for _, method := range []string{http.MethodHead, http.MethodGet} {
			got := send(method, tt.path)
			if got.status != http.StatusNotFound {
				t.Errorf("%s %s = %d %s, want 404 %s", method, tt.path, got.status, got.body, tt.code)
				continue
			}
			if method == http.MethodGet && got.errorCode() != tt.code {
				t.Errorf("GET %s: code %q, want %s", tt.path, got.errorCode(), tt.code)
			}
		}
	}
}

// TestHostedMissesAreNotFoundWhateverTheUpstreamSays: in a hosted
// namespace whose pulls fall through to the upstream, a missing blob,
// manifest or tag, and an empty repository, are unknown (404 with the
// spec's code), also when the upstream refuses the mirror its namesake
// (401 there, which the proxied path turns into 403).
func TestHostedMissesAreNotFoundWhateverTheUpstreamSays(t *testing.T) {
	t.Parallel()
	e := newHostedEnvOver(t,
		mirror.HostedOptions{Repositories: []string{"team/**"}, FallThrough: []string{"team/**"}},
		registrytest.Options{Private: []string{"team/*"}})
	if _, err := e.hub.PushImage("team/app", "2", registrytest.ImageOptions{Layers: 1, LayerSize: 256, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	e.hub.Reset()
	for _, user := range []string{"", pushUser} {
		assertHostedNotFound(t, func(method, path string) hostedResponse {
			return e.send(t, method, path, nil, nil, user, pushPassword)
		})
	}
	if asked := e.hub.CountRequests(func(r registrytest.Request) bool { return r.Repo == "team/app" }); asked == 0 {
		t.Fatal("the upstream was never asked: the pulls did not fall through")
	}
}

// TestHostedMissesAreNotFoundWhenTheUpstreamIsNotExposed: the mirror's
// credentials read the upstream namesake of a hosted name, which is not
// public there; an anonymous client's misses are unknown, not refused.
func TestHostedMissesAreNotFoundWhenTheUpstreamIsNotExposed(t *testing.T) {
	t.Parallel()
	e := newAttackEnvHosting(t, mirror.HostedOptions{Repositories: []string{"team/**"}, FallThrough: []string{"team/**"}})
	e.hubPrivate.Store(true)
	assertHostedNotFound(t, func(method, path string) hostedResponse {
		got := e.do(t, method, path, false)
		return hostedResponse{status: got.status, header: got.header, body: got.body}
	})
}

// TestHostedMissStaysUnavailableWhenTheUpstreamIsDown: only what the
// upstream says about the name becomes 404; an upstream that does not
// answer is still a failure a retry may cure.
func TestHostedMissStaysUnavailableWhenTheUpstreamIsDown(t *testing.T) {
	t.Parallel()
	e := newHostedEnvOver(t,
		mirror.HostedOptions{Repositories: []string{"team/**"}, FallThrough: []string{"team/**"}},
		registrytest.Options{})
	e.hub.SetDown(true)
	got := e.send(t, http.MethodGet, "/v2/team/app/manifests/1", nil, nil, "", "")
	if got.status < 500 {
		t.Fatalf("GET with the upstream down = %d %s, want a 5xx", got.status, got.body)
	}
}

// TestHostedTagsDoNotTellWhetherTheUpstreamNamesakeIsPrivate: a hosted
// name that falls through lists its own tags alone, the same way whether
// its upstream namesake does not exist or the client may not read it
// there, as its manifests, blobs and referrers already answer: an
// anonymous client cannot tell a private upstream repository from a
// missing one through the mirror's hosted names.
func TestHostedTagsDoNotTellWhetherTheUpstreamNamesakeIsPrivate(t *testing.T) {
	t.Parallel()
	e := newAttackEnvHosting(t, mirror.HostedOptions{Repositories: []string{"team/**"}, FallThrough: []string{"team/**"}})
	e.hubPrivate.Store(true) // team/app is private upstream; team/other does not exist there
	if _, err := e.hub.PushImage("team/app", "2", registrytest.ImageOptions{Layers: 1, LayerSize: 256, Seed: 5}); err != nil {
		t.Fatal(err)
	}
	for _, repo := range []string{"team/app", "team/other"} {
		if err := e.pushAs(t, repo+":1", randomImage(t), alice, alicePassword); err != nil {
			t.Fatal(err)
		}
	}
	for _, repo := range []string{"team/app", "team/other"} {
		for _, method := range []string{http.MethodHead, http.MethodGet} {
			got := e.do(t, method, "/v2/"+repo+"/tags/list", false)
			if got.status != http.StatusOK || len(got.header.Values("Warning")) != 0 {
				t.Errorf("anonymous %s of %s's tags = %d, Warning %q; want 200 without a warning",
					method, repo, got.status, got.header.Values("Warning"))
			}
			if want := `{"name":"` + repo + `","tags":["1"]}`; method == http.MethodGet && strings.TrimSpace(string(got.body)) != want {
				t.Errorf("anonymous GET of %s's tags = %s, want %s", repo, got.body, want)
			}
		}
	}
}
