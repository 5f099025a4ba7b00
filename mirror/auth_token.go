package mirror

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
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
// an anonymous token) and an expiry, signed with a key that lives as long
// as the process. A restart invalidates the tokens; clients then fetch new
// ones. Safe for concurrent use.
type tokenIssuer struct {
	key [32]byte
	now func() time.Time
}

func newTokenIssuer(now func() time.Time) *tokenIssuer {
	t := &tokenIssuer{now: now}
	rand.Read(t.key[:]) // never fails
	return t
}

func (t *tokenIssuer) issue(user string) string {
	payload := []byte(strconv.FormatInt(t.now().Add(tokenTTL).Unix(), 10) + ":" + user)
	return base64.RawURLEncoding.EncodeToString(payload) + "." + base64.RawURLEncoding.EncodeToString(t.sign(payload))
}

// verify returns the user of a valid token, "" for an anonymous one.
func (t *tokenIssuer) verify(token string) (user string, ok bool) {
	p, s, found := strings.Cut(token, ".")
	payload, err1 := base64.RawURLEncoding.DecodeString(p)
	sig, err2 := base64.RawURLEncoding.DecodeString(s)
	if !found || err1 != nil || err2 != nil || !hmac.Equal(sig, t.sign(payload)) {
		return "", false
	}
	exp, user, _ := strings.Cut(string(payload), ":")
	expiry, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || !t.now().Before(time.Unix(expiry, 0)) {
		return "", false
	}
	return user, true
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
// one without credentials. Wrong credentials are refused when the client
// logs in or asks to push, and otherwise ignored (they may be another
// registry's, see above): a failed login never locks out a pull.
func (h *hostedRepos) serveToken(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		// containerd tries an OAuth2 POST first and falls back to GET on 405.
		return newError(codeUnsupported, "fetch tokens with GET")
	}
	user := ""
	if name, password, ok := r.BasicAuth(); ok {
		switch {
		case h.users.Authenticate(name, password):
			user = name
		case wantsWrite(r):
			return newError(codeUnauthorized, "incorrect username or password")
		}
	}
	token := h.tokens.issue(user)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	return json.NewEncoder(w).Encode(tokenResponse{
		Token:       token,
		AccessToken: token,
		ExpiresIn:   int(tokenTTL.Seconds()),
		IssuedAt:    h.tokens.now().UTC().Format(time.RFC3339),
	})
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
func pingChallenge(w http.ResponseWriter, r *http.Request) error {
	scheme := "http"
	if r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https" {
		scheme = "https"
	}
	w.Header().Set("WWW-Authenticate",
		`Bearer realm="`+scheme+"://"+r.Host+tokenPath+`",service="`+tokenService+`"`)
	return newError(codeUnauthorized, "authentication required")
}
