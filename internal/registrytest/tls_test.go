package registrytest

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/regmirror/regmirror/internal/testpki"
)

// Over TLS with client certificates required, the registry and its CDN
// answer clients with a certificate of the CA and refuse the others; its
// URLs say https and name the configured host name.
func TestTLSWithClientCertificates(t *testing.T) {
	t.Parallel()
	ca := testpki.NewCA(t, "registrytest")
	r := New(t, Options{Hostname: "registry.test", TLS: &tls.Config{
		Certificates: []tls.Certificate{ca.Server(t, "server", "registry.test").TLS},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.Pool(),
	}})
	for _, u := range []string{r.URL(), r.CDNURL(), r.Realm()} {
		if !strings.HasPrefix(u, "https://registry.test:") {
			t.Errorf("URL %s does not say https://registry.test", u)
		}
	}
	client := func(certs ...tls.Certificate) *http.Client {
		dialer := &net.Dialer{}
		return &http.Client{Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), Certificates: certs},
			// registry.test is the listener's address under the name its URLs use.
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				_, port, _ := net.SplitHostPort(addr)
				return dialer.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", port))
			},
		}}
	}
	resp, err := client(ca.Client(t, "client").TLS).Get(r.URL() + "/v2/")
	if err != nil {
		t.Fatalf("GET /v2/ with a client certificate: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /v2/ = %d, want 401 (the token challenge)", resp.StatusCode)
	}
	if resp, err := client().Get(r.URL() + "/v2/"); err == nil {
		resp.Body.Close()
		t.Error("GET /v2/ without a client certificate was answered")
	}
}
