package mirror

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"
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

// tokenIssuer issues and verifies the mirror's tokens: the user (empty for
// an anonymous token), what the token grants and an expiry, signed with a
// key that lives as long as the process. A restart invalidates the tokens;
// clients then fetch new ones. Safe for concurrent use.
type tokenIssuer struct {
	key [32]byte
	now func() time.Time
}

func newTokenIssuer(now func() time.Time) *tokenIssuer {
	t := &tokenIssuer{now: now}
	rand.Read(t.key[:]) // never fails
	return t
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
	return base64.RawURLEncoding.EncodeToString(payload) + "." + base64.RawURLEncoding.EncodeToString(t.sign(payload))
}

// verify returns the claims of a valid, unexpired token.
func (t *tokenIssuer) verify(token string) (tokenClaims, bool) {
	p, s, found := strings.Cut(token, ".")
	payload, err1 := base64.RawURLEncoding.DecodeString(p)
	sig, err2 := base64.RawURLEncoding.DecodeString(s)
	if !found || err1 != nil || err2 != nil || !hmac.Equal(sig, t.sign(payload)) {
		return tokenClaims{}, false
	}
	var claims tokenClaims
	if err := json.Unmarshal(payload, &claims); err != nil || !t.now().Before(time.Unix(claims.Expires, 0)) {
		return tokenClaims{}, false
	}
	return claims, true
}

func (t *tokenIssuer) sign(payload []byte) []byte {
	mac := hmac.New(sha256.New, t.key[:])
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
		return newError(codeUnsupported, "fetch tokens with GET")
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
	return &Error{Code: codeUnauthorized, Message: "authentication required",
		Challenge: `Bearer realm="` + scheme + "://" + r.Host + tokenPath + `",service="` + tokenService + `"`}
}
