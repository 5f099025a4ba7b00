package edge

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestProxiesApply(t *testing.T) {
	t.Parallel()
	proxies, err := ParseProxies([]string{"10.0.0.0/8", "192.0.2.10", "2001:db8:ff::/48"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		proxies    Proxies
		remote     string
		xff        []string
		proto      string
		wantRemote string
		wantProto  string
		wantXFF    bool // X-Forwarded-For is still there
	}{
		{name: "nobody trusted: headers dropped", remote: "203.0.113.5:4000", xff: []string{"198.51.100.1"}, proto: "https",
			wantRemote: "203.0.113.5:4000"},
		{name: "untrusted peer: headers dropped", proxies: proxies, remote: "203.0.113.5:4000", xff: []string{"198.51.100.1"}, proto: "https",
			wantRemote: "203.0.113.5:4000"},
		{name: "trusted proxy: client from the header", proxies: proxies, remote: "10.1.2.3:4000", xff: []string{"198.51.100.1"}, proto: "https",
			wantRemote: "198.51.100.1:0", wantProto: "https", wantXFF: true},
		{name: "single trusted address", proxies: proxies, remote: "192.0.2.10:4000", xff: []string{"198.51.100.1"},
			wantRemote: "198.51.100.1:0", wantXFF: true},
		{name: "spoofed hops left of the real client are ignored", proxies: proxies, remote: "10.1.2.3:4000",
			xff: []string{"6.6.6.6, 198.51.100.1, 10.9.9.9"}, wantRemote: "198.51.100.1:0", wantXFF: true},
		{name: "hops in several header lines", proxies: proxies, remote: "10.1.2.3:4000",
			xff: []string{"6.6.6.6", "198.51.100.1, 10.9.9.9"}, wantRemote: "198.51.100.1:0", wantXFF: true},
		{name: "every hop a proxy: the leftmost", proxies: proxies, remote: "10.1.2.3:4000",
			xff: []string{"10.0.0.7, 10.9.9.9"}, wantRemote: "10.0.0.7:0", wantXFF: true},
		{name: "garbage ends the walk at the proxy", proxies: proxies, remote: "10.1.2.3:4000",
			xff: []string{"198.51.100.1, not-an-address"}, wantRemote: "10.1.2.3:4000", wantXFF: true},
		{name: "hop with a port", proxies: proxies, remote: "10.1.2.3:4000",
			xff: []string{"198.51.100.1:5555"}, wantRemote: "198.51.100.1:0", wantXFF: true},
		{name: "IPv6 client behind an IPv6 proxy", proxies: proxies, remote: "[2001:db8:ff::1]:4000",
			xff: []string{"2001:db8:1::7"}, wantRemote: "[2001:db8:1::7]:0", wantXFF: true},
		{name: "no header from a proxy: the proxy", proxies: proxies, remote: "10.1.2.3:4000", wantRemote: "10.1.2.3:4000"},
		{name: "the nearest proxy's scheme counts", proxies: proxies, remote: "10.1.2.3:4000", proto: "http, HTTPS",
			wantRemote: "10.1.2.3:4000", wantProto: "https"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest(http.MethodGet, "/v2/", nil)
			r.RemoteAddr = tt.remote
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if tt.proto != "" {
				r.Header.Set("X-Forwarded-Proto", tt.proto)
			}
			r.Header.Set("Forwarded", "for=6.6.6.6;proto=https")
			r.Header.Set("X-Real-Ip", "6.6.6.6")
			original := r.Header.Clone()

			got := tt.proxies.apply(r)
			if got.RemoteAddr != tt.wantRemote {
				t.Errorf("RemoteAddr = %q, want %q", got.RemoteAddr, tt.wantRemote)
			}
			if p := got.Header.Get("X-Forwarded-Proto"); p != tt.wantProto {
				t.Errorf("X-Forwarded-Proto = %q, want %q", p, tt.wantProto)
			}
			if has := got.Header.Get("X-Forwarded-For") != ""; has != tt.wantXFF {
				t.Errorf("X-Forwarded-For present: %v, want %v", has, tt.wantXFF)
			}
			trusted := tt.proxies.Contains(mustAddrPort(t, tt.remote))
			if has := got.Header.Get("Forwarded") != "" && got.Header.Get("X-Real-Ip") != ""; has != trusted {
				t.Errorf("Forwarded and X-Real-Ip present: %v, want %v (from a trusted proxy only)", has, trusted)
			}
			if r.RemoteAddr != tt.remote || len(r.Header) != len(original) {
				t.Errorf("the server's request was changed: RemoteAddr %q, header %v", r.RemoteAddr, r.Header)
			}
		})
	}
}

func TestParseProxiesRejectsNonsense(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "10.0.0.0/33", "proxy.example", "fe80::1%eth0", "10.0.0.0/8/8"} {
		if _, err := ParseProxies([]string{s}); err == nil {
			t.Errorf("ParseProxies(%q) succeeded, want an error", s)
		}
	}
}
