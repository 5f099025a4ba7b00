package mirror

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/regmirror/regmirror/internal/ociserver"
)

// The ping's challenge, and why there is a token endpoint at all:
//
// dockerd (the classic image store) learns how to authenticate to a
// registry only from the 401 of its ping, GET /v2/, and uses that
// challenge for every later request. A ping answered 200 means `docker
// login` never checks the password and `docker push` never sends it. A
// Basic challenge would make docker login and push work, but dockerd then
// refuses to send a single request without Basic credentials ("no basic
// auth credentials"), and a dockerd pulling through the mirror has none for
// it: every pull would fall back to Docker Hub. A Bearer challenge works for
// both: dockerd fetches a token from the realm, anonymously when it has no
// credentials for the mirror (the token endpoint then hands out an anonymous
// token, which every pull accepts), and with the credentials of docker login
// when it has them.
//
// A dockerd logged in to Docker Hub sends its Hub credentials to the token
// endpoint of every mirror that challenges (moby#42022). They do not match a
// user here, so they earn an anonymous token for pulls; they are never
// logged or kept.

// tokenPath is the token endpoint: a path no repository request can take.
const tokenPath = "/v2/token"

// tokenService names the mirror in its Bearer challenges.
const tokenService = "regmirror"

// tokenTTL is how long a token is valid. Clients fetch a new one when
// theirs expires, so a push longer than this is not cut short.
const tokenTTL = 5 * time.Minute

// MinTokenKeyLen is the shortest key TokenKeys take: the size of an
// HMAC-SHA256 output, below which a key is easier to guess than a
// signature is to forge.
const MinTokenKeyLen = 32

// TokenKeys sign and verify the tokens of the hosted repositories' logins.
// Replicas behind one load balancer given the same keys accept one
// another's tokens. The zero value means a random key that lives as long
// as the process.
type TokenKeys struct {
	// Current signs new tokens and verifies them; at least MinTokenKeyLen
	// bytes.
	Current []byte
	// Previous, during a rotation, still verifies the tokens it signed
	// and signs none; nil when there is none.
	Previous []byte
}

// validate refuses keys too short to be secret. Errors say which key,
// never what it holds.
func (k TokenKeys) validate() error {
	if len(k.Current) < MinTokenKeyLen {
		return fmt.Errorf("token key: the current key is shorter than %d bytes", MinTokenKeyLen)
	}
	if k.Previous != nil && len(k.Previous) < MinTokenKeyLen {
		return fmt.Errorf("token key: the previous key is shorter than %d bytes", MinTokenKeyLen)
	}
	return nil
}

// clone copies the keys, so that a caller reusing its slices cannot change
// the keys in use.
func (k TokenKeys) clone() *TokenKeys {
	return &TokenKeys{Current: bytes.Clone(k.Current), Previous: bytes.Clone(k.Previous)}
}

// tokenIssuer issues and verifies the mirror's tokens: the user (empty for
// an anonymous token), what the token grants and an expiry, signed with the
// current key and verified with the current or the previous one. Without
// configured keys the key is random and lives as long as the process: a
// restart invalidates the tokens, and clients then fetch new ones. Safe
// for concurrent use; setKeys swaps the keys whole.
type tokenIssuer struct {
	keys atomic.Pointer[TokenKeys]
	now  func() time.Time
}

// newTokenIssuer returns an issuer with keys, or with a random key when
// keys is the zero value.
func newTokenIssuer(keys TokenKeys, now func() time.Time) (*tokenIssuer, error) {
	t := &tokenIssuer{now: now}
	if keys.Current == nil && keys.Previous == nil {
		keys.Current = make([]byte, MinTokenKeyLen)
		rand.Read(keys.Current) // never fails
	}
	if err := t.setKeys(keys); err != nil {
		return nil, err
	}
	return t, nil
}

// setKeys makes keys the ones tokens are signed and verified with from now
// on. Invalid keys change nothing.
func (t *tokenIssuer) setKeys(keys TokenKeys) error {
	if err := keys.validate(); err != nil {
		return err
	}
	t.keys.Store(keys.clone())
	return nil
}

// SetTokenKeys replaces the keys of the hosted repositories' tokens, as a
// configuration reload does during a rotation: from then on tokens are
// signed with keys.Current and verified with either key. Tokens signed
// with a key no longer given stop verifying; their clients fetch new ones.
// Keys shorter than MinTokenKeyLen, or a mirror without hosted
// repositories, are refused with an error and change nothing.
func (m *Mirror) SetTokenKeys(keys TokenKeys) error {
	if m.hosted == nil {
		return errors.New("mirror: token keys without hosted repositories")
	}
	if err := m.hosted.tokens.setKeys(keys); err != nil {
		return fmt.Errorf("mirror: %w", err)
	}
	return nil
}

// tokenClaims are what a token says, as its signed JSON payload. Groups
// are the user's groups from the directory that permissions name, as they
// were when the token was issued.
type tokenClaims struct {
	Expires int64       `json:"exp"`
	User    string      `json:"sub,omitempty"`
	Groups  []string    `json:"groups,omitempty"`
	Access  tokenAccess `json:"access,omitempty"`
}

// tokenAccess is what a token grants: the actions of the Docker token
// specification's scopes, by hosted repository name.
type tokenAccess []accessGrant

type accessGrant struct {
	Name    string   `json:"name"`
	Actions []Action `json:"actions"`
}

// grants reports whether the token may do a on the repository name.
func (ta tokenAccess) grants(name string, a Action) bool {
	return slices.ContainsFunc(ta, func(g accessGrant) bool { return g.Name == name && slices.Contains(g.Actions, a) })
}

func (t *tokenIssuer) issue(who principal, access tokenAccess) string {
	payload, _ := json.Marshal(tokenClaims{Expires: t.now().Add(tokenTTL).Unix(), User: who.user, Groups: who.groups, Access: access}) // cannot fail
	return base64.RawURLEncoding.EncodeToString(payload) + "." + base64.RawURLEncoding.EncodeToString(sign(t.keys.Load().Current, payload))
}

// verify returns the claims of a valid, unexpired token.
func (t *tokenIssuer) verify(token string) (tokenClaims, bool) {
	p, s, found := strings.Cut(token, ".")
	payload, err1 := base64.RawURLEncoding.DecodeString(p)
	sig, err2 := base64.RawURLEncoding.DecodeString(s)
	if !found || err1 != nil || err2 != nil || !t.signedByAKey(payload, sig) {
		return tokenClaims{}, false
	}
	var claims tokenClaims
	if err := json.Unmarshal(payload, &claims); err != nil || !t.now().Before(time.Unix(claims.Expires, 0)) {
		return tokenClaims{}, false
	}
	return claims, true
}

// signedByAKey reports whether sig is the signature of payload with the
// current key or, during a rotation, the previous one.
func (t *tokenIssuer) signedByAKey(payload, sig []byte) bool {
	keys := t.keys.Load()
	if hmac.Equal(sig, sign(keys.Current, payload)) {
		return true
	}
	return keys.Previous != nil && hmac.Equal(sig, sign(keys.Previous, payload))
}

func sign(key, payload []byte) []byte {
	mac := hmac.New(sha256.New, key)
	mac.Write(payload)
	return mac.Sum(nil)
}

// tokenResponse is the token endpoint's answer, in the fields both docker
// (token) and OAuth2 clients (access_token) read.
type tokenResponse struct {
	Token       string `json:"token"`
	AccessToken string `json:"access_token"`
	ExpiresIn   int    `json:"expires_in"`
	IssuedAt    string `json:"issued_at"`
}

// serveToken hands out tokens: a user's for valid credentials, an anonymous
// one without credentials, each granting of the scopes asked for what the
// permissions allow. Wrong credentials are refused when the client logs in
// or asks to push, and otherwise ignored (they may be another registry's,
// see above): a failed login never locks out a pull.
func (h *hostedRepos) serveToken(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		// containerd tries an OAuth2 POST first and falls back to GET on 405.
		return newError(ociserver.CodeUnsupported, "fetch tokens with GET")
	}
	who, err := h.tokenUser(w, r)
	if err != nil {
		return err
	}
	token := h.tokens.issue(who, h.grant(who, r.URL.Query()["scope"]))
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	return json.NewEncoder(w).Encode(tokenResponse{
		Token:       token,
		AccessToken: token,
		ExpiresIn:   int(tokenTTL.Seconds()),
		IssuedAt:    h.tokens.now().UTC().Format(time.RFC3339),
	})
}

// maxTokenScopes bounds the scopes one token carries: docker asks for two
// at most (a push and a mount's source).
const maxTokenScopes = 16

// grant returns what who may have of the repository scopes asked for: of
// a hosted repository, the actions its permissions allow; of any other,
// pull, which the mirror serves to everyone. Scopes it cannot parse, and
// other resource types, are left out, as the token specification allows.
func (h *hostedRepos) grant(who principal, scopes []string) tokenAccess {
	var access tokenAccess
	for _, scope := range scopes {
		for _, one := range strings.Fields(scope) {
			if len(access) == maxTokenScopes {
				return access
			}
			name, actions, ok := parseRepositoryScope(one)
			if !ok {
				continue
			}
			hostedName, err := resolveHostedName(name, "", h.defaultHost)
			if err != nil {
				continue
			}
			var granted []Action
			for _, a := range actions {
				if h.permitted(who, hostedName, a) || (a == ActionPull && !h.isHostedName(hostedName)) {
					granted = append(granted, a)
				}
			}
			if len(granted) > 0 {
				access = append(access, accessGrant{Name: hostedName, Actions: granted})
			}
		}
	}
	return access
}

// parseRepositoryScope reads "repository:NAME:ACTION[,ACTION...]"; NAME may
// hold a registry host with a port, so it is what lies between the first
// and the last colon.
func parseRepositoryScope(scope string) (name string, actions []Action, ok bool) {
	kind, rest, found := strings.Cut(scope, ":")
	i := strings.LastIndexByte(rest, ':')
	if !found || kind != "repository" || i <= 0 {
		return "", nil, false
	}
	for _, a := range strings.Split(rest[i+1:], ",") {
		if a == "*" {
			actions = append(actions, ActionPull, ActionPush, ActionDelete)
		} else {
			actions = append(actions, Action(a))
		}
	}
	return rest[:i], slices.Compact(actions), true
}

// wantsWrite reports whether a token request is a login (docker asks for an
// offline token then) or asks for more than pulls.
func wantsWrite(r *http.Request) bool {
	q := r.URL.Query()
	if q.Get("offline_token") == "true" || len(q["scope"]) == 0 {
		return true
	}
	for _, scope := range q["scope"] {
		parts := strings.Split(scope, ":")
		for _, action := range strings.Split(parts[len(parts)-1], ",") {
			if action != "pull" {
				return true
			}
		}
	}
	return false
}

// pingChallenge answers the ping of a client without a valid token or
// valid credentials with a Bearer challenge whose realm is the token
// endpoint on the host the client used. X-Forwarded-Proto counts because
// only a trusted proxy's reaches the mirror: the daemon's edge (package
// internal/edge) deletes it from every other peer's requests.
func pingChallenge(r *http.Request) error {
	scheme := "http"
	if r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https" {
		scheme = "https"
	}
	return &Error{Code: ociserver.CodeUnauthorized, Message: "authentication required",
		Challenge: `Bearer realm="` + scheme + "://" + r.Host + tokenPath + `",service="` + tokenService + `"`}
}
