package main

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/upstream"
)

func TestUpstreamConfigShapes(t *testing.T) {
	t.Parallel()
	runConfigCases(t, []configCase{
		{
			name: "the plain list form is unchanged",
			yaml: "upstreams:\n  - host: docker.io\n    username: bot\n    password: p\n",
			check: func(t *testing.T, c Config) {
				if len(c.Upstreams) != 1 || c.Upstreams[0].URL != "https://registry-1.docker.io" || c.AllowAnyUpstream || c.ListedUpstreamsOnly {
					t.Fatalf("config = %+v", c)
				}
			},
		},
		{
			name: "a well-known host alone gets its endpoint",
			yaml: "upstreams:\n  - host: ghcr.io\n  - host: registry.k8s.io\n  - host: registry.example.com:5000\n",
			check: func(t *testing.T, c Config) {
				got := []string{c.Upstreams[0].URL, c.Upstreams[1].URL, c.Upstreams[2].URL}
				want := []string{"https://ghcr.io", "https://registry.k8s.io", "https://registry.example.com:5000"}
				if !slices.Equal(got, want) {
					t.Fatalf("urls = %v, want %v", got, want)
				}
			},
		},
		{
			name: "per-upstream cap and repository policy",
			yaml: "upstreams:\n  - host: docker.io\n    max_concurrent_fetches: 4\n    allow: [\"library/*\", \"myorg/**\"]\n    deny:\n      - myorg/secret/**\n",
			check: func(t *testing.T, c Config) {
				u := c.Upstreams[0]
				if u.MaxConcurrentFetches != 4 || !slices.Equal(u.Allow, []string{"library/*", "myorg/**"}) || !slices.Equal(u.Deny, []string{"myorg/secret/**"}) {
					t.Fatalf("upstream = %+v", u)
				}
			},
		},
		{
			name: "allow_any_upstream",
			yaml: "allow_any_upstream: true\n",
			check: func(t *testing.T, c Config) {
				if !c.AllowAnyUpstream || len(c.Upstreams) != 1 {
					t.Fatalf("config = %+v", c)
				}
			},
		},
		{
			name: "listed_upstreams_only",
			yaml: "listed_upstreams_only: true\nupstreams:\n  - host: ghcr.io\n",
			check: func(t *testing.T, c Config) {
				if !c.ListedUpstreamsOnly {
					t.Fatalf("config = %+v", c)
				}
			},
		},
		{name: "both contradict", yaml: "listed_upstreams_only: true\nallow_any_upstream: true\n", wantErr: "contradict"},
		{name: "typo inside an upstream", yaml: "upstreams:\n  - host: docker.io\n    alow: [x]\n", wantErr: "field alow not found"},
		{name: "the old object idea is not a second form", yaml: "upstreams:\n  allow_any: true\n", wantErr: "cannot unmarshal"},
	})
}

func hosts(ups []UpstreamConfig) []string {
	var hs []string
	for _, u := range ups {
		hs = append(hs, u.Host)
	}
	return hs
}

func TestEffectiveUpstreams(t *testing.T) {
	t.Parallel()
	var wellKnown []string
	for _, r := range wellKnownRegistries {
		wellKnown = append(wellKnown, r.Host)
	}

	defaults := Config{}.withDefaults().effectiveUpstreams()
	if got := hosts(defaults); !slices.Equal(got, wellKnown) {
		t.Fatalf("without a config: %v, want the well-known registries %v", got, wellKnown)
	}

	listed := Config{Upstreams: []UpstreamConfig{{Host: "ghcr.io", URL: "http://127.0.0.1:1", MaxConcurrentFetches: 2}, {Host: "registry.example.com"}}}.withDefaults()
	ups := listed.effectiveUpstreams()
	if got := hosts(ups); len(got) != len(wellKnown)+1 || got[0] != "ghcr.io" || got[1] != "registry.example.com" {
		t.Fatalf("listed and well-known: %v", got)
	}
	if n := strings.Count(strings.Join(hosts(ups), " "), "ghcr.io"); n != 1 || ups[0].URL != "http://127.0.0.1:1" || ups[0].MaxConcurrentFetches != 2 {
		t.Fatalf("the listed ghcr.io must replace the built-in one: %+v", ups)
	}

	listed.ListedUpstreamsOnly = true
	if got := hosts(listed.effectiveUpstreams()); !slices.Equal(got, []string{"ghcr.io", "registry.example.com"}) {
		t.Fatalf("listed_upstreams_only: %v", got)
	}
}

// With allow_any_upstream, a registry nobody listed is reached at its
// https endpoint; a host naming a loopback address is refused before any
// connection. Nothing is ever dialed here beyond loopback.
func TestAllowAnyNeverDialsPrivateAddresses(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()

	cfg := Config{DataDir: t.TempDir(), AllowAnyUpstream: true}.withDefaults()
	url, _ := startDaemon(t, cfg, io.Discard)
	for _, path := range []string{
		"/v2/" + ln.Addr().String() + "/org/app/manifests/1",
		"/v2/org/app/manifests/1?ns=" + ln.Addr().String(),
		"/v2/localhost:" + portOf(ln) + "/org/app/manifests/1",
	} {
		resp, err := http.Get(url + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode < 500 || !strings.Contains(string(body), "UNAVAILABLE") {
			t.Errorf("GET %s = %d %s, want a 5xx UNAVAILABLE", path, resp.StatusCode, body)
		}
	}
	if n := accepted.Load(); n != 0 {
		t.Fatalf("the loopback listener accepted %d connections", n)
	}
}

func portOf(ln net.Listener) string {
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// Without allow_any_upstream, anyUpstream is not wired at all; with it, it
// makes https remotes for the host asked.
func TestMirrorRemotes(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.DiscardHandler)
	remotes, newRemote, err := mirrorRemotes(Config{ListedUpstreamsOnly: true}.withDefaults(), log, nil)
	if err != nil || newRemote != nil || len(remotes) != 1 || remotes[0].Host != "docker.io" {
		t.Fatalf("listed only: %d remotes, newRemote set: %v, err %v", len(remotes), newRemote != nil, err)
	}
	_, newRemote, err = mirrorRemotes(Config{AllowAnyUpstream: true}.withDefaults(), log, nil)
	if err != nil || newRemote == nil {
		t.Fatalf("allow_any: newRemote set: %v, err %v", newRemote != nil, err)
	}
	r, err := newRemote("registry.example.com")
	if err != nil || r.Host != "registry.example.com" || r.Upstream == nil {
		t.Fatalf("newRemote = %+v, %v", r, err)
	}
}

// With allow_any_upstream, a client names a host whose credential sources
// have something for a similar name: the environment variables an operator
// set for registry.gitlab.com, which registry-gitlab.com shares. The
// mirror asks that host anonymously; nothing secret reaches it.
func TestClientNamedHostGetsNoCredentials(t *testing.T) {
	t.Setenv("REGMIRROR_UPSTREAM_REGISTRY_GITLAB_COM_USERNAME", "gitlabbot")
	t.Setenv("REGMIRROR_UPSTREAM_REGISTRY_GITLAB_COM_PASSWORD", "gitlab-secret")
	var mu sync.Mutex
	var seen []string
	attacker := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.URL.Path+" "+r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("WWW-Authenticate", `Bearer realm="https://registry-gitlab.com/token",service="x"`)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer attacker.Close()
	// Every host the client dials is the attacker's listener.
	toAttacker := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, attacker.Listener.Addr().String())
		},
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
	}
	cfg := Config{AllowAnyUpstream: true}.withDefaults()
	if _, _, err := mirrorRemotes(cfg, slog.New(slog.DiscardHandler), nil); err != nil {
		t.Fatal(err)
	}
	clientNamed := newAnyUpstream(cfg.effectiveUpstreams(), clientFactory{log: slog.New(slog.DiscardHandler), transport: toAttacker})
	r, err := clientNamed.remote("registry-gitlab.com")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Upstream.HeadManifest(context.Background(), "org/app", "1"); err == nil {
		t.Fatal("HEAD succeeded against a listener that only answers 401")
	}
	if public, err := r.Visibility.Public(context.Background(), "org/app"); err != nil || !public {
		t.Fatalf("Public = %v, %v: a remote without credentials has nothing to hide", public, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) == 0 {
		t.Fatal("the attacker's host saw no request: the test proves nothing")
	}
	for _, req := range seen {
		if strings.HasSuffix(req, " ") {
			continue
		}
		t.Errorf("the client-named host received credentials: %s", req)
	}
}

// Two configured registries whose environment variable names collide
// (registry.gitlab.com, a well-known one, and registry-gitlab.com) make
// the environment's credentials ambiguous: the daemon refuses to start.
func TestSharedCredentialEnvNamesRefusedAtStartup(t *testing.T) {
	t.Setenv("REGMIRROR_UPSTREAM_REGISTRY_GITLAB_COM_USERNAME", "gitlabbot")
	t.Setenv("REGMIRROR_UPSTREAM_REGISTRY_GITLAB_COM_PASSWORD", "gitlab-secret")
	cfg := Config{Upstreams: []UpstreamConfig{{Host: "registry-gitlab.com"}}}.withDefaults()
	_, _, err := mirrorRemotes(cfg, slog.New(slog.DiscardHandler), nil)
	if err == nil || !strings.Contains(err.Error(), "registry-gitlab.com, registry.gitlab.com") {
		t.Fatalf("mirrorRemotes error = %v, want one naming both registries", err)
	}
	if strings.Contains(err.Error(), "gitlab-secret") {
		t.Fatalf("the error leaks the password: %v", err)
	}
}

// A client names a configured registry by an alias (default port, case)
// to get around its deny list, or by another port of its host with
// allow_any_upstream. Aliases reach the configured registry, deny list
// and all; other ports are not mirrored. No connection is made elsewhere.
func TestHostAliasesCannotEscapeRegistrySettings(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t, registrytest.Options{})
	img, err := reg.PushImage("library/app", "1", registrytest.ImageOptions{Layers: 1, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.PushImage("secret/app", "1", registrytest.ImageOptions{Layers: 1, Seed: 4}); err != nil {
		t.Fatal(err)
	}
	cfg := Config{DataDir: t.TempDir(), AllowAnyUpstream: true, Upstreams: []UpstreamConfig{{
		Host: "localhost", URL: reg.URL(), Deny: []string{"secret/**"},
	}}}.withDefaults()
	base, _ := startDaemon(t, cfg, io.Discard)

	tests := []struct {
		name, path string
		status     int
		code       string
	}{
		{"default port prefix", "/v2/localhost:443/secret/app/manifests/1", http.StatusForbidden, "DENIED"},
		{"default port and case in ns", "/v2/secret/app/manifests/1?ns=LocalHost:443", http.StatusForbidden, "DENIED"},
		{"http port", "/v2/localhost:80/secret/app/manifests/1", http.StatusForbidden, "DENIED"},
		{"another port", "/v2/localhost:8443/secret/app/manifests/1", http.StatusNotFound, "NAME_UNKNOWN"},
		{"allowed repository under an alias", "/v2/localhost:443/library/app/manifests/" + img.Manifest.Digest.String(), http.StatusOK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Get(base + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status || !strings.Contains(string(body), tt.code) {
				t.Fatalf("GET %s = %d %s, want %d %s", tt.path, resp.StatusCode, body, tt.status, tt.code)
			}
		})
	}
	for _, r := range reg.Requests() {
		if strings.Contains(r.Path, "secret/") {
			t.Errorf("the upstream was asked for a denied repository: %s %s", r.Method, r.Path)
		}
	}
}

// A registry redirects blob downloads to signed CDN URLs, and the CDN
// hangs up (or, for a URL with user info, the credential guard refuses
// it). The failures are logged and answered, and neither the log nor the
// answers hold the signature or the user info: whoever reads them must not
// be able to download with them.
func TestSignedRedirectURLsNeverLogged(t *testing.T) {
	t.Parallel()
	const signature = "c2lnbmVkLXNlY3JldA"
	reg := registrytest.New(t, registrytest.Options{RedirectBlobs: true})
	img, err := reg.PushImage("library/app", "1", registrytest.ImageOptions{Layers: 2, Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	// The CDN accepts connections and closes them at once.
	hangup, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hangup.Close()
	go func() {
		for {
			c, err := hangup.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	query := "/blobs/x?X-Amz-Credential=AKIAEXAMPLE&X-Amz-Signature=" + signature
	redirects := map[digest.Digest]string{
		img.Layers[0].Digest: "http://" + hangup.Addr().String() + query,
		img.Layers[1].Digest: "http://cdnuser:cdnpass@" + hangup.Addr().String() + query,
	}
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for d, to := range redirects {
			if strings.HasSuffix(r.URL.Path, "/blobs/"+d.String()) {
				http.Redirect(w, r, to, http.StatusTemporaryRedirect)
				return
			}
		}
		proxyTo(t, reg).ServeHTTP(w, r)
	}))
	defer front.Close()

	var logs strings.Builder
	var logsMu sync.Mutex
	cfg := Config{DataDir: t.TempDir(), Upstreams: []UpstreamConfig{{Host: "docker.io", URL: front.URL}}}.withDefaults()
	base, _ := startDaemon(t, cfg, lockedWriter{&logsMu, &logs})
	var bodies []byte
	for d := range redirects {
		resp, err := http.Get(base + "/v2/library/app/blobs/" + d.String())
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode < 500 {
			t.Fatalf("GET blob through a failing redirect = %d %s, want a 5xx", resp.StatusCode, body)
		}
		bodies = append(bodies, body...)
	}
	logsMu.Lock()
	defer logsMu.Unlock()
	if strings.Count(logs.String(), hangup.Addr().String()) < 2 {
		t.Fatalf("the log does not mention both failed CDN requests: the test proves nothing\n%s", logs.String())
	}
	for _, secret := range []string{signature, "AKIAEXAMPLE", "cdnpass", "cdnuser"} {
		if strings.Contains(logs.String(), secret) || strings.Contains(string(bodies), secret) {
			t.Errorf("%q leaked:\nlog: %s\nbodies: %s", secret, logs.String(), bodies)
		}
	}
}

// proxyTo forwards a request to reg, its token service included.
func proxyTo(t *testing.T, reg *registrytest.Registry) http.Handler {
	u, err := url.Parse(reg.URL())
	if err != nil {
		t.Fatal(err)
	}
	p := httputil.NewSingleHostReverseProxy(u)
	p.ModifyResponse = func(resp *http.Response) error {
		if c := resp.Header.Get("WWW-Authenticate"); c != "" {
			resp.Header.Set("WWW-Authenticate", strings.Replace(c, reg.Host(), resp.Request.Host, 1))
		}
		return nil
	}
	return p
}

// lockedWriter serialises the daemon's log writes with the test's reads.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// A registry a client names (allow_any_upstream) is counted in the same
// upstream metrics as the configured ones, so the status page and
// /metrics show it; closing its client, as the mirror does when it drops
// the remote, drops its series.
func TestClientNamedRegistriesAreCounted(t *testing.T) {
	t.Parallel()
	toNamed := namedRegistryTransport(t)
	reg := prometheus.NewRegistry()
	cfg := Config{AllowAnyUpstream: true}.withDefaults()
	clientNamed := newAnyUpstream(cfg.effectiveUpstreams(), clientFactory{log: slog.New(slog.DiscardHandler), reg: reg, transport: toNamed})
	r, err := clientNamed.remote("registry.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Upstream.HeadManifest(context.Background(), "org/app", "1"); err == nil {
		t.Fatal("HEAD of a manifest the registry does not have succeeded")
	}
	monitor, err := upstream.NewMonitor(reg)
	if err != nil {
		t.Fatal(err)
	}
	health := func() (upstream.Health, bool) {
		for _, h := range monitor.Health() {
			if h.Host == "registry.example.com" {
				return h, true
			}
		}
		return upstream.Health{}, false
	}
	if h, ok := health(); !ok || h.Requests < 2 || h.Breaker != "closed" {
		t.Fatalf("registry.example.com health = %+v (listed: %v), want its ping and HEAD counted", h, ok)
	}
	r.Upstream.(interface{ Close() }).Close()
	if h, ok := health(); ok {
		t.Fatalf("after Close: %+v, want its series gone", h)
	}
}

// A request still in flight when the mirror drops the client of a
// registry a client named (it keeps a bounded number of them) must not put
// back the series Close dropped: otherwise every dropped, busy client
// leaves its host in the metrics for good, and clients naming ever new
// hosts grow them without bound.
func TestClientNamedSeriesStayGoneAfterARequestInFlight(t *testing.T) {
	t.Parallel()
	toNamed := namedRegistryTransport(t)
	sent, release := make(chan struct{}), make(chan struct{})
	held := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.Method == http.MethodHead {
			close(sent)
			<-release
		}
		return toNamed.RoundTrip(r)
	})
	reg := prometheus.NewRegistry()
	cfg := Config{AllowAnyUpstream: true}.withDefaults()
	clientNamed := newAnyUpstream(cfg.effectiveUpstreams(), clientFactory{log: slog.New(slog.DiscardHandler), reg: reg, transport: held})
	r, err := clientNamed.remote("registry.example.com")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Upstream.HeadManifest(context.Background(), "org/app", "1")
	}()
	<-sent
	r.Upstream.(interface{ Close() }).Close() // the mirror drops the remote
	close(release)
	<-done
	monitor, err := upstream.NewMonitor(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range monitor.Health() {
		if h.Host == "registry.example.com" {
			t.Fatalf("after Close and the end of its last request: %+v, want its series gone", h)
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// namedRegistryTransport dials, whatever the host, a TLS registry that
// answers /v2/ and has no content: the registry a client names.
func namedRegistryTransport(t *testing.T) *http.Transport {
	t.Helper()
	named := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			w.WriteHeader(http.StatusOK)
			return
		}
		w.WriteHeader(http.StatusNotFound)
	}))
	t.Cleanup(named.Close)
	return &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, named.Listener.Addr().String())
		},
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
	}
}
