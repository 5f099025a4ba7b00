package upstream

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/regmirror/regmirror/internal/registrytest"
)

// capture is a listener that records every request it gets and answers 401,
// standing in for a host that must never see the mirror's secrets.
type capture struct {
	srv *httptest.Server

	mu       sync.Mutex
	requests []http.Header
}

func newCapture(t *testing.T) *capture {
	t.Helper()
	c := &capture{}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		h := r.Header.Clone()
		if u, p, ok := r.BasicAuth(); ok {
			h.Set("X-Basic", u+":"+p)
		}
		h.Set("X-Query", r.URL.RawQuery)
		c.requests = append(c.requests, h)
		c.mu.Unlock()
		w.WriteHeader(http.StatusUnauthorized)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *capture) received() []http.Header {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]http.Header(nil), c.requests...)
}

// challengeRewriter fronts reg and rewrites the realm of its bearer
// challenges to realm: an upstream that sends the mirror's token request,
// with its password, wherever it likes.
func challengeRewriter(t *testing.T, reg *registrytest.Registry, realm string) *httptest.Server {
	t.Helper()
	target, err := url.Parse(reg.URL())
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(resp *http.Response) error {
		if c := resp.Header.Get("WWW-Authenticate"); c != "" {
			resp.Header.Set("WWW-Authenticate", strings.Replace(c, reg.Realm(), realm, 1))
		}
		return nil
	}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	return srv
}

// namedHosts is a transport that resolves made-up host names to loopback
// listeners, so a test can play registries with DNS names.
func namedHosts(names map[string]string) http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if to, ok := names[addr]; ok {
			addr = to
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	return t
}

func hostOf(t *testing.T, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// A challenge naming a realm on another host gets no credentials: with
// them, the handshake is refused before anything is sent there; without
// them, the anonymous token request may go, since it carries nothing.
// (ggcr itself refuses realms at private IP addresses; this is about
// names, which it lets through.)
func TestForeignRealmGetsNoCredentials(t *testing.T) {
	t.Parallel()
	for _, withCreds := range []bool{true, false} {
		name := map[bool]string{true: "with credentials", false: "anonymous"}[withCreds]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			reg, _ := privateRegistry(t, registrytest.Options{})
			thief := newCapture(t)
			front := challengeRewriter(t, reg, "http://thief.test/token")
			tr := namedHosts(map[string]string{
				"registry.test:80": hostOf(t, front.URL),
				"thief.test:80":    hostOf(t, thief.srv.URL),
			})
			keys := staticKeys(t, "registry.test", password)
			if !withCreds {
				keys = nil
			}
			c, err := New(Config{Host: "registry.test", URL: "http://registry.test", Retries: -1}, keys, Options{Transport: tr})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(c.Close)

			_, err = c.HeadManifest(context.Background(), "private/node", "10")
			if err == nil {
				t.Fatal("HEAD through a foreign realm succeeded")
			}
			got := thief.received()
			if withCreds {
				if !errors.Is(err, ErrCredentialsWithheld) {
					t.Fatalf("err = %v, want ErrCredentialsWithheld", err)
				}
				if asError(t, err).Temporary() {
					t.Fatal("withheld credentials reported as temporary: retrying cannot help")
				}
				if len(got) != 0 {
					t.Fatalf("the foreign realm received %d requests, want none", len(got))
				}
			} else if len(got) == 0 {
				t.Fatal("the anonymous token request never reached the realm: the test proves nothing")
			}
			for _, h := range got {
				if h.Get("Authorization") != "" || h.Get("X-Basic") != "" {
					t.Fatalf("the foreign realm received credentials: %v", h)
				}
			}
			assertNoSecret(t, err.Error(), password)
		})
	}
}

// A registry with a DNS name never sends the mirror to a loopback or IP
// address, credentials or not: neither a realm (ggcr refuses private ones
// too) nor a blob redirect there would turn the mirror against its own
// network.
func TestNamedRegistryNeverSendsMirrorToIPs(t *testing.T) {
	t.Parallel()
	reg, ix := privateRegistry(t, registrytest.Options{})
	thief := newCapture(t)
	front := challengeRewriter(t, reg, thief.srv.URL+"/token")
	tr := namedHosts(map[string]string{"registry.test:80": hostOf(t, front.URL)})
	for _, withCreds := range []bool{true, false} {
		keys := staticKeys(t, "registry.test", password)
		if !withCreds {
			keys = nil
		}
		c, err := New(Config{Host: "registry.test", URL: "http://registry.test", Retries: -1}, keys, Options{Transport: tr})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.HeadManifest(context.Background(), "private/node", "10"); err == nil {
			t.Fatalf("credentials %v: HEAD through a realm at an IP address succeeded", withCreds)
		}
		c.Close()
	}
	if n := len(thief.received()); n != 0 {
		t.Fatalf("the IP realm received %d requests, want none", n)
	}

	// Blob redirects to the CDN, which listens on an IP address.
	reg.SetRedirectBlobs(true)
	named := challengeRewriter(t, reg, "http://registry.test/token")
	direct := namedHosts(map[string]string{"registry.test:80": hostOf(t, named.URL)})
	c, err := New(Config{Host: "registry.test", URL: "http://registry.test", Retries: -1},
		staticKeys(t, "registry.test", password), Options{Transport: direct})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	_, _, _, err = c.GetBlob(context.Background(), "private/node", ix.Images[0].Layers[0].Digest, 0)
	if !errors.Is(err, ErrCredentialsWithheld) {
		t.Fatalf("GET blob redirected to an IP address: err = %v, want ErrCredentialsWithheld", err)
	}
	if n := len(reg.CDNRequests()); n != 0 {
		t.Fatalf("the CDN at an IP address received %d requests, want none", n)
	}
}

// A token service on another host named in auth_hosts gets the credentials,
// as Docker Hub's auth.docker.io does, and the pull works.
func TestConfiguredAuthHostGetsCredentials(t *testing.T) {
	t.Parallel()
	reg, ix := privateRegistry(t, registrytest.Options{})
	front := challengeRewriter(t, reg, "http://auth.test/token")
	tr := namedHosts(map[string]string{
		"registry.test:80": hostOf(t, front.URL),
		"auth.test:80":     reg.Host(),
	})
	c, err := New(Config{Host: "registry.test", URL: "http://registry.test", AuthHosts: []string{"auth.test"}},
		staticKeys(t, "registry.test", password), Options{Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	desc, err := c.HeadManifest(context.Background(), "private/node", "10")
	if err != nil || desc.Digest != ix.Descriptor.Digest {
		t.Fatalf("HEAD = %v, %v; want %s", desc.Digest, err, ix.Descriptor.Digest)
	}
	if n := reg.TokenRequests("repository:private/node:pull"); n != 1 {
		t.Fatalf("%d token requests, want 1", n)
	}
}

// Blob redirects to another host are followed without Authorization; the
// CDN sees neither the password nor the registry's token.
func TestRedirectedBlobCarriesNoToken(t *testing.T) {
	t.Parallel()
	reg, ix := privateRegistry(t, registrytest.Options{RedirectBlobs: true})
	c, _ := newClient(t, reg, Config{}, staticKeys(t, reg.Host(), password), Options{})
	for _, b := range ix.Images[0].Blobs() {
		readBlob(t, c, "private/node", b)
	}
	tokens := reg.IssuedTokens()
	if len(tokens) == 0 {
		t.Fatal("no token was issued: the test proves nothing")
	}
	for _, r := range reg.CDNRequests() {
		for name, values := range r.Header {
			for _, v := range values {
				assertNoSecret(t, name+": "+v, append([]string{password}, tokens...)...)
			}
		}
	}
}

func assertNoSecret(t *testing.T, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(text, s) {
			t.Fatalf("%q contains a secret", text)
		}
	}
}

func TestCredentialGuardRules(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, registry, target, method, auth string
		authHosts                            []string
		allowed                              bool
	}{
		{"registry itself", "registry.test", "http://registry.test/v2/", "GET", "Bearer x", nil, true},
		{"known token service", "registry-1.docker.io", "https://auth.docker.io/token", "GET", "Basic x", nil, true},
		// The aliases come from internal/registryhost, the one table
		// that routing and credentials use too.
		{"known token service of an alias", "registry.hub.docker.com", "https://auth.docker.io/token", "GET", "Basic x", nil, true},
		{"known token service, any spelling", "Index.Docker.IO.:443", "https://auth.docker.io/token", "GET", "Basic x", nil, true},
		{"configured token service", "registry.test", "https://auth.test/token", "GET", "Basic x", []string{"auth.test"}, true},
		{"basic auth elsewhere", "registry.test", "https://evil.test/token", "GET", "Basic x", nil, false},
		{"oauth post elsewhere", "registry.test", "https://evil.test/token", "POST", "", nil, false},
		{"anonymous get elsewhere", "registry.test", "https://cdn.test/blob", "GET", "", nil, true},
		{"another port of the registry", "127.0.0.1:5000", "http://127.0.0.1:5001/token", "GET", "Basic x", nil, false},
		{"IP for a named registry", "registry.test", "http://169.254.169.254/token", "GET", "", nil, false},
		{"localhost for a named registry", "registry.test", "http://localhost:8080/token", "GET", "", nil, false},
		{"loopback CDN of a loopback registry", "127.0.0.1:5000", "http://127.0.0.1:5001/blob", "GET", "", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g := newCredentialGuard(http.DefaultTransport, tt.registry, tt.registry, tt.authHosts)
			req := httptest.NewRequest(tt.method, tt.target, nil)
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			err := g.check(req)
			if (err == nil) != tt.allowed {
				t.Fatalf("check = %v, want allowed %v", err, tt.allowed)
			}
			if err != nil && !errors.Is(err, ErrCredentialsWithheld) {
				t.Fatalf("err = %v, want ErrCredentialsWithheld", err)
			}
		})
	}
}
