package mirror_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/credentials"
	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/internal/testclock"
	"github.com/regmirror/regmirror/mirror"
	"github.com/regmirror/regmirror/upstream"
)

// limitsEnv is a mirror with hosted repositories, real htpasswd users and a
// public Docker-Hub-like upstream, for the tests of login and upload limits.
type limitsEnv struct {
	hub    *registrytest.Registry
	clock  *testclock.Clock
	dir    string
	hosted *cache.Hosted
	server *httptest.Server
}

// Users of limitsEnv and their passwords.
var limitsUsers = map[string]string{"alice": "alice-password", "bob": "bob-password"}

// limitsUsersCost is the bcrypt cost of their hashes: cheap, for speed.
const limitsUsersCost = bcrypt.MinCost + 1

func parseLimitsUsers(t *testing.T) *mirror.Htpasswd {
	t.Helper()
	var file strings.Builder
	for user, password := range limitsUsers {
		hash, err := bcrypt.GenerateFromPassword([]byte(password), limitsUsersCost)
		if err != nil {
			t.Fatal(err)
		}
		file.WriteString(user + ":" + string(hash) + "\n")
	}
	users, err := mirror.ParseHtpasswd(strings.NewReader(file.String()))
	if err != nil {
		t.Fatal(err)
	}
	return users
}

// newLimitsEnv serves a mirror with opts; opts.Users defaults to
// parseLimitsUsers, the store to one with the default upload TTL.
func newLimitsEnv(t *testing.T, opts mirror.HostedOptions) *limitsEnv {
	t.Helper()
	e := &limitsEnv{
		hub:   registrytest.New(t, registrytest.Options{}),
		clock: testclock.New(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)),
		dir:   t.TempDir(),
	}
	store, err := cache.Open(context.Background(), cache.Options{Dir: e.dir, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if e.hosted, err = store.Hosted(cache.HostedOptions{}); err != nil {
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
	if opts.Users == nil {
		opts.Users = parseLimitsUsers(t)
	}
	opts.Store = e.hosted
	m, err := mirror.New(mirror.Options{
		Cache:   store,
		Remotes: []mirror.Remote{{Host: "docker.io", Upstream: client}},
		Now:     e.clock.Now,
		Hosted:  &opts,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.server = httptest.NewServer(m)
	t.Cleanup(e.server.Close)
	return e
}

// from returns an HTTP client whose connections come from the loopback
// address ip (Linux routes all of 127.0.0.0/8 to lo), so that a test can
// be many clients.
func (e *limitsEnv) from(ip string) *http.Client {
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}}
}

// do sends a request with Basic credentials unless user is "".
func (e *limitsEnv) do(t *testing.T, c *http.Client, method, path string, body io.Reader, user, password string) hostedResponse {
	t.Helper()
	req, err := http.NewRequest(method, e.server.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	if c == nil {
		c = e.server.Client()
	}
	resp, err := c.Do(req)
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

// Token requests as docker sends them: a login, and a pull's.
const (
	loginPath     = "/v2/token?account=x&offline_token=true&service=regmirror"
	pullTokenPath = "/v2/token?scope=repository:library/busybox:pull&service=regmirror"
)
