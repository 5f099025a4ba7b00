package upstream

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/regmirror/regmirror/internal/registrytest"
)

// Only global unicast addresses are public: the ranges that translate to
// private IPv4 addresses (NAT64, 6to4, Teredo, IPv4-mapped and -compatible)
// and the special-purpose ones are not, whatever a denylist forgot.
func TestPublicAddress(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, addr string
		public     bool
	}{
		{"public IPv4", "8.8.8.8:443", true},
		{"public IPv6", "[2606:4700:4700::1111]:443", true},
		{"IPv4-mapped public", "[::ffff:8.8.8.8]:443", true},
		{"loopback", "127.0.0.1:443", false},
		{"loopback range", "127.8.9.10:5000", false},
		{"IPv6 loopback", "[::1]:443", false},
		{"IPv4-mapped loopback", "[::ffff:127.0.0.1]:443", false},
		{"IPv4-compatible metadata", "[::169.254.169.254]:80", false},
		{"private 10/8", "10.1.2.3:443", false},
		{"private 172.16/12", "172.16.5.4:443", false},
		{"private 192.168/16", "192.168.1.1:443", false},
		{"cloud metadata", "169.254.169.254:80", false},
		{"carrier-grade NAT", "100.64.0.1:443", false},
		{"this network", "0.0.0.0:443", false},
		{"multicast", "224.0.0.1:443", false},
		{"NAT64 to metadata", "[64:ff9b::a9fe:a9fe]:80", false},
		{"local-use NAT64", "[64:ff9b:1::a00:1]:80", false},
		{"6to4 of metadata", "[2002:a9fe:a9fe::1]:80", false},
		{"Teredo", "[2001:0:4136:e378:8000:63bf:3fff:fdd2]:443", false},
		{"benchmarking", "198.18.0.1:443", false},
		{"benchmarking upper half", "198.19.255.254:443", false},
		{"IETF protocol assignments", "192.0.0.170:443", false},
		{"reserved class E", "240.0.0.1:443", false},
		{"broadcast", "255.255.255.255:443", false},
		{"6to4 relay anycast", "192.88.99.1:443", false},
		{"documentation IPv4", "203.0.113.7:443", false},
		{"documentation IPv6", "[2001:db8::1]:443", false},
		{"new documentation IPv6", "[3fff::1]:443", false},
		{"discard-only IPv6", "[100::1]:443", false},
		{"link-local IPv6", "[fe80::1]:443", false},
		{"link-local with zone", "[fe80::1%25eth0]:443", false},
		{"unique local", "[fc00::1]:443", false},
		{"not an address", "not-an-address:443", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			addr := strings.Replace(tt.addr, "%25", "%", 1)
			err := refuseNonPublic("tcp", addr, nil)
			if tt.public != (err == nil) {
				t.Fatalf("refuseNonPublic(%s) = %v, want public=%v", addr, err, tt.public)
			}
			if err != nil && tt.name != "not an address" && !errors.Is(err, ErrNotPublic) {
				t.Fatalf("refusal %v does not wrap ErrNotPublic", err)
			}
		})
	}
}

// locationRewriter fronts reg (token service included) and points its
// blob redirects at another host: an upstream sending the mirror to an
// internal name.
func locationRewriter(t *testing.T, reg *registrytest.Registry, to string) *httptest.Server {
	t.Helper()
	target, err := url.Parse(reg.URL())
	if err != nil {
		t.Fatal(err)
	}
	cdn, err := url.Parse(reg.CDNURL())
	if err != nil {
		t.Fatal(err)
	}
	var front string
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(resp *http.Response) error {
		if loc := resp.Header.Get("Location"); loc != "" {
			resp.Header.Set("Location", strings.Replace(loc, cdn.Host, to, 1))
		}
		if c := resp.Header.Get("WWW-Authenticate"); c != "" {
			resp.Header.Set("WWW-Authenticate", strings.Replace(c, reg.Host(), front, 1))
		}
		return nil
	}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	front = hostOf(t, srv.URL)
	return srv
}

// A configured registry redirects a blob download to a name inside the
// mirror's network (localhost standing in for instance-data.ec2.internal).
// The redirect leaves the registry's host, so it may reach public
// addresses only, checked after DNS: the download fails and the internal
// host sees nothing. Listed in redirect_hosts, the same host is followed;
// another port of the registry's own host always is.
func TestRedirectToInternalHostRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		rewrite       bool // the redirect names localhost:<cdn port>
		redirectHosts []string
		wantRefused   bool
	}{
		{"internal name", true, nil, true},
		{"internal name listed in redirect_hosts", true, []string{"localhost"}, false},
		{"another port of the registry's host", false, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			reg := registrytest.New(t, registrytest.Options{RedirectBlobs: true})
			img, err := reg.PushImage("org/app", "1", registrytest.ImageOptions{Layers: 1, Seed: 5})
			if err != nil {
				t.Fatal(err)
			}
			registryURL := reg.URL()
			if tt.rewrite {
				cdn, _ := url.Parse(reg.CDNURL())
				registryURL = locationRewriter(t, reg, "localhost:"+cdn.Port()).URL
			}
			c, err := New(Config{URL: registryURL, Retries: -1, RedirectHosts: tt.redirectHosts}, nil, Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(c.Close)
			layer := img.Layers[0]
			rc, _, _, err := c.GetBlob(context.Background(), "org/app", layer.Digest, 0)
			if tt.wantRefused {
				if !errors.Is(err, ErrNotPublic) {
					t.Fatalf("GET blob redirected to an internal host: err = %v, want ErrNotPublic", err)
				}
				if asError(t, err).Temporary() {
					t.Fatal("a refused address is reported as temporary: retrying cannot help")
				}
				if n := len(reg.CDNRequests()); n != 0 {
					t.Fatalf("the internal host received %d requests, want none", n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			data, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || int64(len(data)) != layer.Size {
				t.Fatalf("read %d bytes, %v; want %d", len(data), err, layer.Size)
			}
		})
	}
}

// Behind HTTPS_PROXY, the proxy dials the target, out of the dialer's
// sight: the target's name is resolved and checked first, and only the
// proxy's own address is dialed directly.
func TestProxiedHopsAreCheckedToo(t *testing.T) {
	t.Parallel()
	var proxied atomic.Int64
	proxySrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxied.Add(1)
		io.WriteString(w, "via proxy")
	}))
	defer proxySrv.Close()
	proxyURL, _ := url.Parse(proxySrv.URL)
	names := map[string]string{"cdn.example": "93.184.216.34", "instance-data.ec2.internal": "169.254.169.254"}
	p := newCheckedProxy()
	p.fromEnvironment = func(*http.Request) (*url.URL, error) { return proxyURL, nil }
	p.lookup = func(_ context.Context, _, host string) ([]netip.Addr, error) {
		if ip, ok := names[host]; ok {
			return []netip.Addr{netip.MustParseAddr(ip)}, nil
		}
		return nil, errors.New("no such host")
	}
	cfg, _, _ := Config{URL: "https://registry.example"}.validate()
	client := &http.Client{Transport: publicTransport(cfg, p)}
	defer client.CloseIdleConnections()

	tests := []struct {
		url     string
		refused bool
	}{
		{"http://cdn.example/blob", false},
		{"http://instance-data.ec2.internal/latest/meta-data/", true},
		{"http://10.0.0.1/", true},
		{"http://[64:ff9b::a9fe:a9fe]/", true},
	}
	for _, tt := range tests {
		before := proxied.Load()
		resp, err := client.Get(tt.url)
		if err == nil {
			resp.Body.Close()
		}
		if tt.refused != errors.Is(err, ErrNotPublic) {
			t.Errorf("GET %s: err = %v, want refused %v", tt.url, err, tt.refused)
		}
		if reached := proxied.Load() > before; reached == tt.refused {
			t.Errorf("GET %s: reached the proxy %v, want %v", tt.url, reached, !tt.refused)
		}
	}
}
