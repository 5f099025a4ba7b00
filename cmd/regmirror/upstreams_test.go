package main

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
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

func TestRefuseNonPublic(t *testing.T) {
	t.Parallel()
	tests := []struct {
		addr   string
		public bool
	}{
		{"8.8.8.8:443", true},
		{"[2606:4700:4700::1111]:443", true},
		{"127.0.0.1:443", false},
		{"127.8.9.10:5000", false},
		{"[::1]:443", false},
		{"[::ffff:127.0.0.1]:443", false},
		{"10.1.2.3:443", false},
		{"172.16.5.4:443", false},
		{"192.168.1.1:443", false},
		{"169.254.169.254:80", false},
		{"100.64.0.1:443", false},
		{"0.0.0.0:443", false},
		{"224.0.0.1:443", false},
		{"[fe80::1]:443", false},
		{"[fc00::1]:443", false},
		{"not-an-address:443", false},
	}
	for _, tt := range tests {
		err := refuseNonPublic("tcp", tt.addr, nil)
		if tt.public != (err == nil) {
			t.Errorf("refuseNonPublic(%s) = %v, want public=%v", tt.addr, err, tt.public)
		}
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
	if !errors.Is(refuseNonPublic("tcp", "10.0.0.1:443", nil), errNotPublic) {
		t.Fatal("refusals must wrap errNotPublic")
	}
}
