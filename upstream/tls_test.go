package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/internal/testpki"
)

// mutualTLSRegistry runs a registry whose certificate the internal CA
// signed and which demands a client certificate that CA signed, with
// private/node:10 on it.
func mutualTLSRegistry(t *testing.T, ca *testpki.CA, maxVersion uint16) *registrytest.Registry {
	t.Helper()
	server := ca.Server(t, "registry", "127.0.0.1")
	reg, _ := privateRegistry(t, registrytest.Options{TLS: &tls.Config{
		Certificates: []tls.Certificate{server.TLS},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.Pool(),
		MaxVersion:   maxVersion,
	}})
	return reg
}

// Every TLS mistake an operator can make with an upstream comes back as
// a *CertificateError that names the setting to fix, is not retried, and
// shows no key material; with the right settings the pull works.
func TestUpstreamTLSProblemsNameTheSetting(t *testing.T) {
	t.Parallel()
	internal, other := testpki.NewCA(t, "internal"), testpki.NewCA(t, "other")
	mirrorCert, strangerCert := internal.Client(t, "mirror"), other.Client(t, "stranger")
	tests := []struct {
		name        string
		maxVersion  uint16
		tls         TLSConfig
		wantProblem string // "" means the pull works
		wantRemedy  string
	}{
		{"CA and client certificate", 0, TLSConfig{CAFile: internal.CertFile, ClientCert: mirrorCert.CertFile, ClientKey: mirrorCert.KeyFile}, "", ""},
		{"TLS 1.2", tls.VersionTLS12, TLSConfig{CAFile: internal.CertFile, ClientCert: mirrorCert.CertFile, ClientKey: mirrorCert.KeyFile}, "", ""},
		{"verification skipped", 0, TLSConfig{InsecureSkipVerify: true, ClientCert: mirrorCert.CertFile, ClientKey: mirrorCert.KeyFile}, "", ""},
		{"no CA file", 0, TLSConfig{ClientCert: mirrorCert.CertFile, ClientKey: mirrorCert.KeyFile},
			"certificate signed by unknown authority", "set upstreams[].ca_file"},
		{"another CA's file", 0, TLSConfig{CAFile: other.CertFile, ClientCert: mirrorCert.CertFile, ClientKey: mirrorCert.KeyFile},
			"certificate signed by unknown authority", "ca_file " + other.CertFile + " does not hold"},
		{"no client certificate", 0, TLSConfig{CAFile: internal.CertFile},
			"upstream requires a client certificate", "set client_cert/client_key"},
		{"no client certificate, TLS 1.2", tls.VersionTLS12, TLSConfig{CAFile: internal.CertFile},
			"upstream requires a client certificate", "set client_cert/client_key"},
		{"client certificate of another CA", 0, TLSConfig{CAFile: internal.CertFile, ClientCert: strangerCert.CertFile, ClientKey: strangerCert.KeyFile},
			"upstream refused the mirror's client certificate", "signed by a CA the upstream trusts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			reg := mutualTLSRegistry(t, internal, tt.maxVersion)
			c, _ := newClient(t, reg, Config{Host: "registry.corp", TLS: tt.tls}, staticKeys(t, "registry.corp", password), Options{})
			_, _, err := c.GetManifest(context.Background(), "private/node", "10")
			if tt.wantProblem == "" {
				if err != nil {
					t.Fatalf("GetManifest: %v", err)
				}
				return
			}
			var certErr *CertificateError
			if !errors.As(err, &certErr) {
				t.Fatalf("GetManifest error %v does not explain the certificate problem", err)
			}
			if !strings.Contains(certErr.Problem, tt.wantProblem) || !strings.Contains(certErr.Remedy, tt.wantRemedy) {
				t.Errorf("problem %q, remedy %q; want %q and %q", certErr.Problem, certErr.Remedy, tt.wantProblem, tt.wantRemedy)
			}
			if !strings.Contains(err.Error(), certErr.OperatorHint()) {
				t.Errorf("the error %q does not carry the hint %q", err, certErr.OperatorHint())
			}
			if asError(t, err).Temporary() {
				t.Error("a certificate problem is marked temporary: it would be retried")
			}
			for _, key := range [][]byte{mirrorCert.KeyPEM, strangerCert.KeyPEM} {
				if strings.Contains(err.Error(), "PRIVATE KEY") || strings.Contains(err.Error(), string(key[40:80])) {
					t.Errorf("the error shows key material: %v", err)
				}
			}
		})
	}
}

func TestTLSSettingsThatDoNotLoadFailNew(t *testing.T) {
	t.Parallel()
	ca := testpki.NewCA(t, "internal")
	a, b := ca.Client(t, "a"), ca.Client(t, "b")
	tests := []struct {
		name string
		tls  TLSConfig
		want string
	}{
		{"missing CA file", TLSConfig{CAFile: "/nonexistent/ca.pem"}, "CA file"},
		{"CA file without certificates", TLSConfig{CAFile: a.KeyFile}, "holds no PEM certificate"},
		{"key of another certificate", TLSConfig{ClientCert: a.CertFile, ClientKey: b.KeyFile}, "client certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := New(Config{Host: "registry.corp", URL: "https://registry.corp", TLS: tt.tls}, nil, Options{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want an error saying %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "PRIVATE KEY") || strings.Contains(err.Error(), string(a.KeyPEM[40:80])) {
				t.Errorf("the error shows key material: %v", err)
			}
		})
	}
}

func TestProxyValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		proxy   string
		wantErr bool
	}{
		{"http://proxy.corp:3128", false},
		{"https://proxy.corp:3129", false},
		{"http://user:s3cret-proxy-pass@proxy.corp:3128", false},
		{"socks5://proxy.corp:1080", true},
		{"proxy.corp:3128", true},
		{"http://user:s3cret-proxy-pass@proxy.corp:3128/path", true},
		{"http://user:s3cret-proxy-pass@%zz", true},
	}
	for _, tt := range tests {
		_, err := New(Config{Host: "registry.corp", URL: "https://registry.corp", Proxy: tt.proxy}, nil, Options{})
		if (err != nil) != tt.wantErr {
			t.Errorf("proxy %q: New error %v, wantErr %v", tt.proxy, err, tt.wantErr)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("proxy %q: the error shows the proxy's password: %v", tt.proxy, err)
		}
	}
}

// With an upstream's own proxy, the hops that leave the registry go
// through it too, and are still refused unless their addresses are public.
func TestConfiguredProxyKeepsTheAddressPolicy(t *testing.T) {
	t.Parallel()
	var proxied atomic.Int64
	proxySrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxied.Add(1)
		io.WriteString(w, "via proxy")
	}))
	defer proxySrv.Close()
	cfg, base, err := Config{URL: "http://registry.corp.example", Proxy: proxySrv.URL}.validate()
	if err != nil {
		t.Fatal(err)
	}
	rt, err := defaultTransports(cfg, base, nil)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: rt}
	defer client.CloseIdleConnections()
	tests := []struct {
		url     string
		refused bool
	}{
		{"http://registry.corp.example/v2/", false}, // the registry's own host: wherever it is
		{"http://10.0.0.1/", true},
		{"http://169.254.169.254/latest/meta-data/", true},
		{"http://93.184.216.34/blob", false},
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

// A rotated client certificate is presented from the next connection on,
// without a new client (a restart or SIGHUP).
func TestRotatedClientCertificateIsPresented(t *testing.T) {
	t.Parallel()
	internal, other := testpki.NewCA(t, "internal"), testpki.NewCA(t, "other")
	stale, rotated := other.Client(t, "stale"), internal.Client(t, "rotated")
	reg := mutualTLSRegistry(t, internal, 0)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "mirror.crt"), filepath.Join(dir, "mirror.key")
	install := func(leaf testpki.Leaf, mtime time.Time) {
		t.Helper()
		for path, data := range map[string][]byte{certFile: leaf.CertPEM, keyFile: leaf.KeyPEM} {
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			// A time of its own: two writes within the file system's
			// timestamp granularity would look like one.
			if err := os.Chtimes(path, mtime, mtime); err != nil {
				t.Fatal(err)
			}
		}
	}
	start := time.Now().Add(-time.Hour)
	install(stale, start)
	c, _ := newClient(t, reg, Config{Host: "registry.corp", TLS: TLSConfig{CAFile: internal.CertFile, ClientCert: certFile, ClientKey: keyFile}},
		staticKeys(t, "registry.corp", password), Options{})
	if _, _, err := c.GetManifest(context.Background(), "private/node", "10"); !errors.As(err, new(*CertificateError)) {
		t.Fatalf("with a certificate the registry does not trust: %v, want a certificate error", err)
	}
	install(rotated, start.Add(time.Second))
	if _, _, err := c.GetManifest(context.Background(), "private/node", "10"); err != nil {
		t.Fatalf("after the certificate was rotated: %v", err)
	}
}
