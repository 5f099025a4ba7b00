package registrytest

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// grant is what a token allows: actions ("pull", "push") per repository.
type grant map[string][]string

func (g grant) allows(repo, action string) bool {
	return slices.Contains(g[repo], action)
}

type token struct {
	grant   grant
	expires time.Time
}

// tokenStore remembers issued tokens with their scopes and expiry.
type tokenStore struct {
	mu     sync.Mutex
	tokens map[string]token
}

func newTokenStore() *tokenStore { return &tokenStore{tokens: map[string]token{}} }

func (s *tokenStore) issue(g grant, expires time.Time) string {
	var b [24]byte
	rand.Read(b[:])
	t := hex.EncodeToString(b[:])
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[t] = token{grant: g, expires: expires}
	return t
}

// lookup returns the grant of a token that is known and not expired at now.
func (s *tokenStore) lookup(t string, now time.Time) (grant, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	tok, ok := s.tokens[t]
	if !ok || !now.Before(tok.expires) {
		return nil, false
	}
	return tok.grant, true
}

func (s *tokenStore) revokeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.tokens)
}

// tokenResponse is the token endpoint's JSON answer, as Docker Hub sends it.
type tokenResponse struct {
	Token       string `json:"token"`
	AccessToken string `json:"access_token"`
	ExpiresIn   int    `json:"expires_in"`
	IssuedAt    string `json:"issued_at"`
}

// serveToken implements GET /token?service=...&scope=... with optional Basic
// credentials. OAuth2 POSTs get 404, which tells clients to use GET.
func (r *Registry) serveToken(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodGet {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "only GET token requests are supported")
		return
	}
	authenticated := false
	if user, pass, ok := req.BasicAuth(); ok {
		if !r.validCredentials(user, pass) {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"details": "incorrect username or password"})
			return
		}
		authenticated = true
	}
	now := r.opts.Now()
	g := r.grantScopes(requestedScopes(req), authenticated)
	t := r.tokens.issue(g, now.Add(r.opts.TokenTTL))
	writeJSON(w, http.StatusOK, tokenResponse{
		Token:       t,
		AccessToken: t,
		ExpiresIn:   int(r.opts.TokenTTL / time.Second),
		IssuedAt:    now.UTC().Format(time.RFC3339),
	})
}

func (r *Registry) validCredentials(user, pass string) bool {
	if r.opts.Username == "" {
		return false
	}
	userOK := subtle.ConstantTimeCompare([]byte(user), []byte(r.opts.Username)) == 1
	passOK := subtle.ConstantTimeCompare([]byte(pass), []byte(r.opts.Password)) == 1
	return userOK && passOK
}

// grantScopes decides what a token gets. Pull needs credentials on private
// repositories; push needs credentials unless the registry has no account
// at all. Unknown scope types are ignored, as real token servers do.
func (r *Registry) grantScopes(scopes []string, authenticated bool) grant {
	g := grant{}
	for _, scope := range scopes {
		typ, rest, ok := strings.Cut(scope, ":")
		i := strings.LastIndex(rest, ":")
		if !ok || typ != "repository" || i <= 0 {
			continue
		}
		repo, actions := rest[:i], strings.Split(rest[i+1:], ",")
		for _, action := range actions {
			if r.mayGrant(repo, action, authenticated) && !g.allows(repo, action) {
				g[repo] = append(g[repo], action)
			}
		}
	}
	return g
}

func (r *Registry) mayGrant(repo, action string, authenticated bool) bool {
	switch action {
	case "pull":
		return authenticated || !r.isPrivate(repo)
	case "push":
		return authenticated || r.opts.Username == ""
	}
	return false
}

// authorize checks the request's bearer token and, if it does not cover the
// request, answers 401 with a Docker-Hub-style challenge and returns false.
func (r *Registry) authorize(w http.ResponseWriter, req *http.Request, info RequestInfo) bool {
	action := "pull"
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		action = "push"
	}
	raw, hasBearer := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	g, valid := r.tokens.lookup(raw, r.opts.Now())
	needsScope := info.Kind != KindPing && info.Kind != KindCatalog
	switch {
	case !hasBearer:
		r.challenge(w, info, action, "")
	case !valid:
		r.challenge(w, info, action, "invalid_token")
	case needsScope && !g.allows(info.Repo, action):
		r.challenge(w, info, action, "insufficient_scope")
	default:
		return true
	}
	return false
}

func (r *Registry) challenge(w http.ResponseWriter, info RequestInfo, action, reason string) {
	c := fmt.Sprintf("Bearer realm=%q,service=%q", r.Realm(), Service)
	if info.Repo != "" {
		scope := "pull"
		if action == "push" {
			scope = "pull,push"
		}
		c += fmt.Sprintf(",scope=%q", "repository:"+info.Repo+":"+scope)
	}
	if reason != "" {
		c += fmt.Sprintf(",error=%q", reason)
	}
	w.Header().Set("WWW-Authenticate", c)
	detail := []map[string]string{{"Type": "repository", "Class": "", "Name": info.Repo, "Action": action}}
	if info.Repo == "" {
		detail = nil
	}
	writeErrorDetail(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required", detail)
}

// errorBody is the OCI distribution error envelope.
type errorBody struct {
	Errors []errorEntry `json:"errors"`
}

type errorEntry struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	writeErrorDetail(w, status, code, message, nil)
}

func writeErrorDetail(w http.ResponseWriter, status int, code, message string, detail any) {
	writeJSON(w, status, errorBody{Errors: []errorEntry{{Code: code, Message: message, Detail: detail}}})
}

// writeStatusError answers an injected failure with the code a registry
// would use for that status.
func writeStatusError(w http.ResponseWriter, status int) {
	code := "UNKNOWN"
	switch status {
	case http.StatusServiceUnavailable:
		code = "UNAVAILABLE"
	case http.StatusTooManyRequests:
		code = "TOOMANYREQUESTS"
		w.Header().Set("Retry-After", "1")
	case http.StatusUnauthorized:
		code = "UNAUTHORIZED"
	case http.StatusForbidden:
		code = "DENIED"
	case http.StatusNotFound:
		code = "NOT_FOUND"
	}
	writeError(w, status, code, http.StatusText(status))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}
