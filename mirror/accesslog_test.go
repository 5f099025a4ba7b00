package mirror_test

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/credentials"
	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/mirror"
	"github.com/regmirror/regmirror/upstream"
)

// auditEnv is a mirror with hosted users in front of a public upstream,
// logging JSON into logs, and counting the bcrypt comparisons it makes.
type auditEnv struct {
	hub         *registrytest.Registry
	server      *httptest.Server
	logs        *syncBuffer
	comparisons atomic.Int64
}

func newAuditEnv(t *testing.T) *auditEnv {
	t.Helper()
	e := &auditEnv{hub: registrytest.New(t, registrytest.Options{}), logs: &syncBuffer{}}
	store, err := cache.Open(context.Background(), cache.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	hosted, err := store.Hosted(cache.HostedOptions{})
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
	t.Cleanup(client.Close)
	users := parseLimitsUsers(t)
	mirror.SetHtpasswdCompare(users, func(hash, password []byte) error {
		e.comparisons.Add(1)
		return bcrypt.CompareHashAndPassword(hash, password)
	})
	m, err := mirror.New(mirror.Options{
		Cache:   store,
		Remotes: []mirror.Remote{{Host: "docker.io", Upstream: client}},
		Logger:  slog.New(slog.NewJSONHandler(e.logs, nil)),
		Hosted:  &mirror.HostedOptions{Store: hosted, Users: users, Repositories: []string{"team/*"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	e.server = httptest.NewServer(m)
	t.Cleanup(e.server.Close)
	return e
}

// do sends a request with the given Authorization ("" for none) and a
// request ID, and returns the response's status and body.
func (e *auditEnv) do(t *testing.T, method, path, authorization, id string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, e.server.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	req.Header.Set("User-Agent", "audit-test/1.0 (go)")
	req.Header.Set("X-Request-Id", id)
	resp, err := e.server.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body strings.Builder
	if _, err := bufio.NewReader(resp.Body).WriteTo(&body); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, []byte(body.String())
}

// accessLine is the access log line of the request with ID id, waiting
// for it: a client may read the whole answer before the handler returns
// and the line is written.
func (e *auditEnv) accessLine(t *testing.T, id string) map[string]any {
	t.Helper()
	var found map[string]any
	e.logs.waitFor(t, func(log string) bool {
		for line := range strings.SplitSeq(log, "\n") {
			var fields map[string]any
			if json.Unmarshal([]byte(line), &fields) == nil && fields["msg"] == "request" && fields["request_id"] == id {
				found = fields
				return true
			}
		}
		return false
	})
	return found
}

// syncBuffer is a log that tests can wait on. Safe for concurrent use.
type syncBuffer struct {
	mu      sync.Mutex
	buf     strings.Builder
	written chan struct{} // closed and replaced on every write
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.written != nil {
		close(b.written)
		b.written = nil
	}
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor returns once ok holds for the log, failing t if it still does
// not after a minute (the bound of a broken test, not a timing claim).
func (b *syncBuffer) waitFor(t *testing.T, ok func(log string) bool) {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		b.mu.Lock()
		log := b.buf.String()
		if b.written == nil {
			b.written = make(chan struct{})
		}
		written := b.written
		b.mu.Unlock()
		if ok(log) {
			return
		}
		select {
		case <-written:
		case <-deadline:
			t.Fatalf("the log never showed what the test waits for:\n%s", log)
		}
	}
}

func basic(user, password string) string {
	r, _ := http.NewRequest(http.MethodGet, "/", nil)
	r.SetBasicAuth(user, password)
	return r.Header.Get("Authorization")
}

// The access log names the user a request proved to be, with the client's
// address, its user agent and its request ID, and never checks a password
// only to log its user: a pull with a password nobody checked yet names
// nobody and costs no bcrypt comparison; once a login has checked it, the
// same pull names its user from memory. Wrong credentials name nobody,
// and no line holds a password or a token.
func TestAccessLogNamesTheUserWithoutCheckingPasswordsForIt(t *testing.T) {
	t.Parallel()
	e := newAuditEnv(t)
	img, err := e.hub.PushImage("library/busybox", "1", registrytest.ImageOptions{Layers: 1})
	if err != nil {
		t.Fatal(err)
	}
	blob := "/v2/library/busybox/blobs/" + img.Layers[0].Digest.String()
	alice := basic("alice", limitsUsers["alice"])

	steps := []struct {
		id, method, path, authorization string
		wantUser                        string
		wantComparisons                 int64 // in all, after this step
	}{
		{id: "pull-unchecked", method: http.MethodGet, path: blob, authorization: alice},
		{id: "pull-anonymous", method: http.MethodGet, path: blob},
		{id: "login", method: http.MethodGet, path: loginPath, authorization: alice, wantUser: "alice", wantComparisons: 1},
		{id: "pull-recalled", method: http.MethodGet, path: blob, authorization: alice, wantUser: "alice", wantComparisons: 1},
		{id: "push-bob", method: http.MethodPost, path: "/v2/team/app/blobs/uploads/", authorization: basic("bob", limitsUsers["bob"]),
			wantUser: "bob", wantComparisons: 2},
		{id: "pull-wrong-password", method: http.MethodGet, path: blob, authorization: basic("alice", "wrong"), wantComparisons: 2},
		{id: "login-wrong-password", method: http.MethodGet, path: loginPath, authorization: basic("alice", "wrong"), wantComparisons: 3},
	}
	var token string
	for _, s := range steps {
		status, body := e.do(t, s.method, s.path, s.authorization, s.id)
		if s.id == "login" {
			var tok struct{ Token string }
			if err := json.Unmarshal(body, &tok); err != nil || status != http.StatusOK || tok.Token == "" {
				t.Fatalf("login = %d %s", status, body)
			}
			token = tok.Token
		}
		line := e.accessLine(t, s.id)
		if got, _ := line["user"].(string); got != s.wantUser {
			t.Errorf("%s: user %q, want %q (line %v)", s.id, got, s.wantUser, line)
		}
		if n := e.comparisons.Load(); n != s.wantComparisons {
			t.Errorf("%s: %d bcrypt comparisons so far, want %d", s.id, n, s.wantComparisons)
		}
		if line["client"] != "127.0.0.1" || line["user_agent"] != "audit-test/1.0 (go)" {
			t.Errorf("%s: client %v, user agent %v; want 127.0.0.1 and the request's", s.id, line["client"], line["user_agent"])
		}
	}

	status, _ := e.do(t, http.MethodGet, blob, "Bearer "+token, "pull-token")
	if line := e.accessLine(t, "pull-token"); status != http.StatusOK || line["user"] != "alice" {
		t.Errorf("pull with alice's token = %d, logged user %v; want 200 and alice", status, line["user"])
	}
	status, _ = e.do(t, http.MethodGet, blob, "Bearer "+token+"x", "pull-bad-token")
	if line := e.accessLine(t, "pull-bad-token"); line["user"] != nil {
		t.Errorf("pull with a forged token = %d, logged user %v; want none", status, line["user"])
	}
	for _, secret := range []string{limitsUsers["alice"], limitsUsers["bob"], token, strings.TrimPrefix(alice, "Basic ")} {
		if strings.Contains(e.logs.String(), secret) {
			t.Errorf("the log holds a secret: %q", secret)
		}
	}
}
