package mirror_test

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/regmirror/regmirror/mirror"
)

// pushScope is what docker asks a token for before it pushes team/app.
const pushScope = "repository:team/app:pull,push"

// newTokenKey returns a random key of the minimum length.
func newTokenKey(t *testing.T) []byte {
	t.Helper()
	key := make([]byte, mirror.MinTokenKeyLen)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	return key
}

// challengeParam matches the key="value" pairs of a WWW-Authenticate header.
var challengeParam = regexp.MustCompile(`(\w+)="([^"]*)"`)

// loginToken fetches a token the way docker does: the ping answers 401
// with a Bearer challenge, and its realm, asked with the user's
// credentials for scope, answers the token.
func (e *hostedEnv) loginToken(t *testing.T, scope string) string {
	t.Helper()
	ping := e.send(t, http.MethodGet, "/v2/", nil, nil, "", "")
	challenge := ping.header.Get("WWW-Authenticate")
	if ping.status != http.StatusUnauthorized || !strings.HasPrefix(challenge, "Bearer ") {
		t.Fatalf("ping = %d, WWW-Authenticate %q; want 401 with a Bearer challenge", ping.status, challenge)
	}
	params := map[string]string{}
	for _, m := range challengeParam.FindAllStringSubmatch(challenge, -1) {
		params[m[1]] = m[2]
	}
	query := url.Values{"service": {params["service"]}, "scope": {scope}}
	req, err := http.NewRequest(http.MethodGet, params["realm"]+"?"+query.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(pushUser, pushPassword)
	resp, err := e.server.Client().Do(req)
	if err != nil {
		t.Fatalf("token: %v", err)
	}
	defer resp.Body.Close()
	var body struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK || body.Token == "" {
		t.Fatalf("token = %d, %v; want 200 with a token", resp.StatusCode, err)
	}
	return body.Token
}

// accepts reports whether the mirror takes token: the ping with it
// answers 200. A refused token gets the ping's Bearer challenge, which
// sends the client back to this mirror's token endpoint.
func (e *hostedEnv) accepts(t *testing.T, token string) bool {
	t.Helper()
	r := e.send(t, http.MethodGet, "/v2/", nil, http.Header{"Authorization": {"Bearer " + token}}, "", "")
	switch r.status {
	case http.StatusOK:
		return true
	case http.StatusUnauthorized:
		want := `Bearer realm="http://` + e.host() + `/v2/token",service="regmirror"`
		if got := r.header.Get("WWW-Authenticate"); got != want {
			t.Errorf("a refused token's ping: WWW-Authenticate %q, want %q", got, want)
		}
		return false
	default:
		t.Fatalf("ping with a token = %d %s, want 200 or 401", r.status, r.body)
		return false
	}
}

// pushWithToken pushes a random image to team/app:tag with
// go-containerregistry, sending token as docker sends the one it fetched.
func (e *hostedEnv) pushWithToken(t *testing.T, tag, token string) error {
	t.Helper()
	auth := authn.FromConfig(authn.AuthConfig{RegistryToken: token})
	return remote.Write(e.ref(t, "team/app:"+tag), randomImage(t), remote.WithAuth(auth))
}

// isUnauthorized reports whether a push failed with 401.
func isUnauthorized(err error) bool {
	var terr *transport.Error
	return errors.As(err, &terr) && terr.StatusCode == http.StatusUnauthorized
}

// TestTokenFromOneReplicaIsAcceptedByAnotherWithTheSameKey: two mirrors
// given the same token key are two replicas behind one load balancer: a
// token fetched from one pushes to the other. A mirror with another key
// refuses it with the challenge that sends the client to its own token
// endpoint.
func TestTokenFromOneReplicaIsAcceptedByAnotherWithTheSameKey(t *testing.T) {
	t.Parallel()
	shared := mirror.TokenKeys{Current: newTokenKey(t)}
	opts := mirror.HostedOptions{Repositories: []string{"team/*"}, TokenKeys: shared}
	a, b := newHostedEnv(t, opts), newHostedEnv(t, opts)
	other := newHostedEnv(t, mirror.HostedOptions{Repositories: []string{"team/*"}, TokenKeys: mirror.TokenKeys{Current: newTokenKey(t)}})

	token := a.loginToken(t, pushScope)
	if !b.accepts(t, token) {
		t.Fatal("a replica with the same key refuses the other's token")
	}
	if err := b.pushWithToken(t, "1", token); err != nil {
		t.Fatalf("push to a replica with the other's token: %v", err)
	}
	if other.accepts(t, token) {
		t.Error("a mirror with another key accepts the token")
	}
	if err := other.pushWithToken(t, "1", token); !isUnauthorized(err) {
		t.Errorf("push to a mirror with another key = %v, want 401", err)
	}
}

// TestTokensWithoutKeysAreThisProcesssOnly: without TokenKeys each mirror
// signs with a random key of its own, as before keys could be set: a
// token works where it was issued, and nowhere else.
func TestTokensWithoutKeysAreThisProcesssOnly(t *testing.T) {
	t.Parallel()
	opts := mirror.HostedOptions{Repositories: []string{"team/*"}}
	a, b := newHostedEnv(t, opts), newHostedEnv(t, opts)
	token := a.loginToken(t, pushScope)
	if !a.accepts(t, token) {
		t.Fatal("the mirror refuses its own token")
	}
	if b.accepts(t, token) {
		t.Error("a mirror without keys accepts another's token")
	}
}

// TestTokenKeyRotation walks the replicas through a rotation: B already
// signs with the new key and still accepts the old one, so A's tokens work
// at B; B's tokens work at A once A has the new key too, and A's own old
// tokens keep working there until the old key is dropped.
func TestTokenKeyRotation(t *testing.T) {
	t.Parallel()
	oldKey, newKey := newTokenKey(t), newTokenKey(t)
	a := newHostedEnv(t, mirror.HostedOptions{Repositories: []string{"team/*"}, TokenKeys: mirror.TokenKeys{Current: oldKey}})
	b := newHostedEnv(t, mirror.HostedOptions{Repositories: []string{"team/*"},
		TokenKeys: mirror.TokenKeys{Current: newKey, Previous: oldKey}})

	fromA := a.loginToken(t, pushScope)
	if err := b.pushWithToken(t, "from-a", fromA); err != nil {
		t.Fatalf("push to B, which still accepts the old key, with A's token: %v", err)
	}
	fromB := b.loginToken(t, pushScope)
	if a.accepts(t, fromB) {
		t.Fatal("A, with the old key only, accepts a token B signed with the new key")
	}

	if err := a.mirror.SetTokenKeys(mirror.TokenKeys{Current: newKey, Previous: oldKey}); err != nil {
		t.Fatal(err)
	}
	if err := a.pushWithToken(t, "from-b", fromB); err != nil {
		t.Fatalf("push to A, rotated, with B's token: %v", err)
	}
	if !a.accepts(t, fromA) {
		t.Error("A refuses its own token of the old key while the old key is the previous one")
	}
	if !b.accepts(t, a.loginToken(t, pushScope)) {
		t.Error("B refuses a token A signed after the rotation")
	}

	if err := a.mirror.SetTokenKeys(mirror.TokenKeys{Current: newKey}); err != nil {
		t.Fatal(err)
	}
	if a.accepts(t, fromA) {
		t.Error("A accepts a token of the old key after the old key was dropped")
	}
	if !a.accepts(t, fromB) {
		t.Error("A refuses a token of the new key after the old key was dropped")
	}
}

// TestTokenKeysShorterThanTheMinimumAreRefused: a key short enough to
// guess is refused when the mirror is made and when keys are replaced,
// where it changes nothing; the error does not hold the key.
func TestTokenKeysShorterThanTheMinimumAreRefused(t *testing.T) {
	t.Parallel()
	short := []byte(strings.Repeat("k", mirror.MinTokenKeyLen-1))
	good := newTokenKey(t)
	e := newHostedEnv(t, mirror.HostedOptions{Repositories: []string{"team/*"}, TokenKeys: mirror.TokenKeys{Current: good}})
	token := e.loginToken(t, pushScope)
	for _, keys := range []mirror.TokenKeys{{Current: short}, {Current: good, Previous: short}, {Previous: good}} {
		_, err := mirror.New(mirror.Options{Cache: e.store, Hosted: &mirror.HostedOptions{Store: e.hosted, Users: e.opts.Users, TokenKeys: keys}})
		if err == nil || strings.Contains(err.Error(), string(short)) {
			t.Errorf("mirror.New with a %d- and a %d-byte key: err = %v, want a refusal that does not hold the key", len(keys.Current), len(keys.Previous), err)
		}
		if err := e.mirror.SetTokenKeys(keys); err == nil {
			t.Errorf("SetTokenKeys with a %d- and a %d-byte key succeeded", len(keys.Current), len(keys.Previous))
		}
	}
	if !e.accepts(t, token) {
		t.Error("a refused SetTokenKeys changed the keys")
	}

	proxyOnly, err := mirror.New(mirror.Options{Cache: e.store})
	if err != nil {
		t.Fatal(err)
	}
	if err := proxyOnly.SetTokenKeys(mirror.TokenKeys{Current: good}); err == nil {
		t.Error("SetTokenKeys on a mirror without hosted repositories succeeded")
	}
}
