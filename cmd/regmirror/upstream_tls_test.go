package main

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/internal/testpki"
)

// internalRegistry runs a registry named hostname (an address when
// empty) with a certificate of the internal CA ca, which demands a client
// certificate that ca signed, and pushes corp/app:1 to it.
func internalRegistry(t *testing.T, ca *testpki.CA, hostname string) (*registrytest.Registry, registrytest.Image) {
	t.Helper()
	server := ca.Server(t, "registry", "127.0.0.1", hostname)
	reg := registrytest.New(t, registrytest.Options{Hostname: hostname, TLS: &tls.Config{
		Certificates: []tls.Certificate{server.TLS},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.Pool(),
	}})
	img, err := reg.PushImage("corp/app", "1", registrytest.ImageOptions{Layers: 2, LayerSize: 8 << 10, Seed: 41})
	if err != nil {
		t.Fatal(err)
	}
	return reg, img
}

// errorMessage is the message of the first OCI error in body.
func errorMessage(t *testing.T, body []byte) string {
	t.Helper()
	var e struct {
		Errors []struct{ Code, Message string }
	}
	if err := json.Unmarshal(body, &e); err != nil || len(e.Errors) == 0 {
		t.Fatalf("not an OCI error body: %q", body)
	}
	return e.Errors[0].Message
}

// An upstream that requires the internal CA and a client certificate is
// mirrored with ca_file, client_cert and client_key; without either, the
// client's error message and the log say which setting is missing.
func TestUpstreamWithInternalCAAndClientCertificateIsMirrored(t *testing.T) {
	t.Parallel()
	ca := testpki.NewCA(t, "corp")
	reg, img := internalRegistry(t, ca, "")
	mirrorCert := ca.Client(t, "regmirror")
	tests := []struct {
		name     string
		upstream UpstreamConfig
		want     string // in the client's error message and the log; "" means the pull works
	}{
		{"CA and client certificate", UpstreamConfig{CAFile: ca.CertFile, ClientCert: mirrorCert.CertFile, ClientKey: mirrorCert.KeyFile}, ""},
		{"no ca_file", UpstreamConfig{ClientCert: mirrorCert.CertFile, ClientKey: mirrorCert.KeyFile},
			"certificate signed by unknown authority: set upstreams[].ca_file"},
		{"no client certificate", UpstreamConfig{CAFile: ca.CertFile},
			"upstream requires a client certificate: set client_cert/client_key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := tt.upstream
			up.Host, up.URL = "registry.corp.example", reg.URL()
			var logs logBuffer
			cfg := Config{DataDir: t.TempDir(), ListedUpstreamsOnly: true, Upstreams: []UpstreamConfig{up}}
			c := newClient(t, startDaemonLogging(t, cfg, slog.New(slog.NewTextHandler(&logs, nil))))
			if tt.want == "" {
				c.pullImage("registry.corp.example/corp/app", "1", img)
				return
			}
			status, body := c.do(http.MethodGet, "/v2/registry.corp.example/corp/app/manifests/1")
			if status != http.StatusBadGateway {
				t.Errorf("GET manifest = %d, want 502", status)
			}
			if msg := errorMessage(t, body); !strings.Contains(msg, tt.want) {
				t.Errorf("the client reads %q; want it to say %q", msg, tt.want)
			}
			if !strings.Contains(logs.String(), tt.want) {
				t.Errorf("the log does not say %q:\n%s", tt.want, logs.String())
			}
			if strings.Contains(logs.String(), "PRIVATE KEY") || strings.Contains(string(body)+logs.String(), string(mirrorCert.KeyPEM[40:80])) {
				t.Error("key material reached the log or the client")
			}
		})
	}
}

// Upstream traffic goes through the upstream's proxy, http:// or
// https://, and not around it: the registry's name resolves nowhere but
// at the proxy. Its token service and its blob redirects go through it too.
func TestUpstreamTrafficGoesThroughItsProxy(t *testing.T) {
	t.Parallel()
	ca := testpki.NewCA(t, "corp")
	const name = "registry.internal.test" // .test never resolves (RFC 2606)
	reg, img := internalRegistry(t, ca, name)
	reg.SetRedirectBlobs(true) // blobs come from another port: the CDN
	cdn := strings.TrimPrefix(reg.CDNURL(), "https://")
	mirrorCert := ca.Client(t, "regmirror")
	for _, scheme := range []string{"http", "https"} {
		t.Run(scheme, func(t *testing.T) {
			t.Parallel()
			var proxyTLS *tls.Config
			if scheme == "https" {
				proxyTLS = &tls.Config{Certificates: []tls.Certificate{ca.Server(t, "proxy-"+scheme, "127.0.0.1").TLS}}
			}
			proxy := startConnectProxy(t, proxyTLS, map[string]string{name: "127.0.0.1"})
			cfg := Config{DataDir: t.TempDir(), ListedUpstreamsOnly: true, Upstreams: []UpstreamConfig{{
				Host: "registry.corp.example", URL: reg.URL(),
				CAFile: ca.CertFile, ClientCert: mirrorCert.CertFile, ClientKey: mirrorCert.KeyFile,
				Proxy: scheme + "://" + proxy.addr,
			}}}
			c := newClient(t, startDaemonLogging(t, cfg, slog.New(slog.DiscardHandler)))
			c.pullImage("registry.corp.example/corp/app", "1", img)
			connects := proxy.connects()
			if connects[reg.Host()] == 0 || connects[cdn] == 0 {
				t.Errorf("CONNECTs through the proxy: %v; want some to the registry %s and its CDN %s", connects, reg.Host(), cdn)
			}
		})
	}
}

// connectProxy is an HTTP CONNECT proxy on loopback that counts the
// tunnels it opens per target and resolves some names itself.
type connectProxy struct {
	addr string
	// hosts maps names only the proxy resolves to their addresses.
	hosts map[string]string

	mu      sync.Mutex
	counted map[string]int
	conns   map[net.Conn]bool
}

// startConnectProxy serves CONNECT on a loopback port, over TLS when
// tlsConfig is set, until the test ends.
func startConnectProxy(t *testing.T, tlsConfig *tls.Config, hosts map[string]string) *connectProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if tlsConfig != nil {
		ln = tls.NewListener(ln, tlsConfig)
	}
	p := &connectProxy{addr: ln.Addr().String(), hosts: hosts, counted: map[string]int{}, conns: map[net.Conn]bool{}}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			if !p.track(conn) {
				conn.Close()
				return
			}
			wg.Go(func() { p.tunnel(conn) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		p.closeAll()
		wg.Wait()
	})
	return p
}

// track remembers an open connection, unless the proxy is closing.
func (p *connectProxy) track(conn net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		return false
	}
	p.conns[conn] = true
	return true
}

func (p *connectProxy) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for conn := range p.conns {
		conn.Close()
	}
	p.conns = nil
}

// tunnel answers one CONNECT and copies bytes both ways until either
// side closes.
func (p *connectProxy) tunnel(client net.Conn) {
	defer client.Close()
	br := bufio.NewReader(client)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	if req.Method != http.MethodConnect {
		io.WriteString(client, "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
		return
	}
	host, port, err := net.SplitHostPort(req.Host)
	if err != nil {
		io.WriteString(client, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
		return
	}
	if addr, ok := p.hosts[host]; ok {
		host = addr
	}
	upstream, err := net.Dial("tcp", net.JoinHostPort(host, port))
	if err != nil {
		io.WriteString(client, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
		return
	}
	if !p.track(upstream) {
		upstream.Close()
		return
	}
	defer upstream.Close()
	p.mu.Lock()
	p.counted[req.Host]++
	p.mu.Unlock()
	if _, err := io.WriteString(client, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	done := make(chan struct{})
	go func() {
		io.Copy(upstream, br) // br holds whatever the client sent early
		upstream.Close()
		close(done)
	}()
	io.Copy(client, upstream)
	client.Close()
	<-done
}

// connects are the tunnels opened so far per CONNECT target.
func (p *connectProxy) connects() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]int{}
	for k, v := range p.counted {
		out[k] = v
	}
	return out
}

// insecure_skip_verify works, and says so as a warning at startup and on
// every reload.
func TestInsecureSkipVerifyIsLoggedAtStartupAndOnEveryReload(t *testing.T) {
	t.Parallel()
	ca := testpki.NewCA(t, "corp")
	reg, img := internalRegistry(t, ca, "")
	mirrorCert := ca.Client(t, "regmirror")
	cfg := Config{DataDir: t.TempDir(), ListedUpstreamsOnly: true, Upstreams: []UpstreamConfig{{
		Host: "registry.corp.example", URL: reg.URL(), InsecureSkipVerify: true,
		ClientCert: mirrorCert.CertFile, ClientKey: mirrorCert.KeyFile,
	}}}
	requests := make(chan os.Signal)
	applied := make(chan error)
	var logs logBuffer
	c := newClient(t, startDaemonReloading(t, cfg, slog.New(slog.NewTextHandler(&logs, nil)), reloadSource{
		load:     func() (Config, error) { return cfg.withDefaults(), nil },
		requests: requests,
		applied:  func(err error) { applied <- err },
	}))
	c.pullImage("registry.corp.example/corp/app", "1", img)
	const warning = `level=WARN msg="TLS certificate verification is OFF for this upstream`
	for n := 1; n <= 3; n++ {
		if got := strings.Count(logs.String(), warning); got != n {
			t.Fatalf("after %d start or reloads the warning was logged %d times:\n%s", n, got, logs.String())
		}
		requests <- syscall.SIGHUP
		if err := <-applied; err != nil {
			t.Fatalf("reload: %v", err)
		}
	}
}

func TestUpstreamTLSSettingsAreValidated(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		upstream UpstreamConfig
		want     string // "" means valid
	}{
		{"all set", UpstreamConfig{CAFile: "ca.pem", ClientCert: "c.pem", ClientKey: "k.pem", Proxy: "http://proxy.corp:3128"}, ""},
		{"https proxy with a login", UpstreamConfig{Proxy: "https://bot:proxy-s3cret@proxy.corp:3129"}, ""},
		{"certificate without key", UpstreamConfig{ClientCert: "c.pem"}, "client_cert and client_key must be set together"},
		{"key without certificate", UpstreamConfig{ClientKey: "k.pem"}, "client_cert and client_key must be set together"},
		{"CA file ignored", UpstreamConfig{CAFile: "ca.pem", InsecureSkipVerify: true}, "insecure_skip_verify ignores ca_file"},
		{"SOCKS proxy", UpstreamConfig{Proxy: "socks5://bot:proxy-s3cret@proxy.corp:1080"}, "must be http://host:port or https://host:port"},
		{"proxy without scheme", UpstreamConfig{Proxy: "proxy.corp:3128"}, "must be http://host:port or https://host:port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := tt.upstream
			up.Host = "registry.corp.example"
			err := Config{Upstreams: []UpstreamConfig{up}}.withDefaults().validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "upstreams[0]") {
				t.Fatalf("validate = %v, want an error about upstreams[0] saying %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "proxy-s3cret") {
				t.Errorf("the error shows the proxy's password: %v", err)
			}
		})
	}
}
