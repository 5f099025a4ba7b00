package upstream

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/regmirror/regmirror/internal/keypair"
)

// TLSConfig is how the client verifies the registry and identifies itself
// to it. The zero value verifies against the system's roots (which
// SSL_CERT_FILE and SSL_CERT_DIR may point elsewhere) and presents no
// client certificate.
type TLSConfig struct {
	// CAFile is a PEM file of CA certificates trusted in addition to the
	// system's roots, for every host the registry sends the client to:
	// the internal CA that signed an on-premises registry's certificate.
	// Adding rather than replacing keeps a redirect to a public CDN
	// working. It is read when the client is made (at startup, on SIGHUP).
	CAFile string
	// ClientCert and ClientKey are PEM files of a certificate and its
	// private key that the client presents to the registry's configured
	// hosts (its own, AuthHosts, RedirectHosts) when they ask for one:
	// mutual TLS. Other hosts never get it. The files are read again at
	// the next handshake after they change, so rotated certificates take
	// effect without a restart; a pair that does not load leaves the one
	// in use.
	ClientCert, ClientKey string
	// InsecureSkipVerify accepts any certificate from the registry's
	// configured hosts, so anyone on the path can read and change what the
	// mirror fetches. Other hosts are verified all the same.
	InsecureSkipVerify bool
}

// tlsConfigs builds the TLS configs of the hop router's two sides:
// configured for the hosts the operator configured, elsewhere for the
// rest (nil: Go's defaults). changed hears how each reload of the client
// certificate that a change of its files started ended.
func (c TLSConfig) tlsConfigs(changed func(error)) (configured, elsewhere *tls.Config, err error) {
	if c == (TLSConfig{}) {
		return nil, nil, nil
	}
	configured = &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.InsecureSkipVerify}
	if c.CAFile != "" {
		roots, err := rootsWith(c.CAFile)
		if err != nil {
			return nil, nil, err
		}
		configured.RootCAs = roots
		elsewhere = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}
	}
	if c.ClientCert != "" || c.ClientKey != "" {
		pair, err := keypair.Load(c.ClientCert, c.ClientKey, changed)
		if err != nil {
			return nil, nil, fmt.Errorf("client certificate: %w", err)
		}
		configured.GetClientCertificate = pair.GetClientCertificate
	}
	return configured, elsewhere, nil
}

// rootsWith is the system's roots plus the CA certificates in caFile.
func rootsWith(caFile string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		// No system roots (a scratch container): the CA file alone.
		roots = x509.NewCertPool()
	}
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", caFile)
	}
	return roots, nil
}

// CertificateError is a TLS failure explained for an operator: what is
// wrong and which setting fixes it. Err is crypto/tls's error, which
// never holds key material.
type CertificateError struct {
	// Problem says what is wrong, e.g. "certificate signed by unknown
	// authority"; Remedy what to do about it, e.g. "set upstreams[].ca_file".
	Problem, Remedy string
	Err             error
}

// Error says what is wrong, what fixes it, and crypto/tls's own words.
func (e *CertificateError) Error() string {
	return e.OperatorHint() + " (" + e.Err.Error() + ")"
}

// Unwrap returns crypto/tls's error.
func (e *CertificateError) Unwrap() error { return e.Err }

// OperatorHint is the problem and its remedy, without crypto/tls's
// details: fit for the error message a client of the mirror reads.
func (e *CertificateError) OperatorHint() string { return e.Problem + ": " + e.Remedy }

// explainTLS turns the TLS failures of the transport underneath into
// *CertificateError.
type explainTLS struct {
	inner http.RoundTripper
	tls   TLSConfig
}

func (t *explainTLS) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.inner.RoundTrip(req)
	if err != nil {
		return nil, t.tls.explain(err)
	}
	return resp, nil
}

// explain returns err as a *CertificateError when it is a TLS failure it
// can name, else err. The remedies name the settings of an upstream in
// regmirror's config file.
func (c TLSConfig) explain(err error) error {
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
	)
	explained := func(problem, remedy string) error {
		return &CertificateError{Problem: problem, Remedy: remedy, Err: err}
	}
	switch alert := remoteAlert(err); {
	case errors.As(err, &unknown) && c.CAFile == "":
		return explained("certificate signed by unknown authority", "set upstreams[].ca_file to the CA that signed it")
	case errors.As(err, &unknown):
		return explained("certificate signed by unknown authority", "ca_file "+c.CAFile+" does not hold the CA that signed it")
	case errors.As(err, &hostname):
		return explained("certificate is not valid for "+hostname.Host, "the upstream's url must name a host its certificate lists")
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return explained("certificate has expired or is not yet valid", "renew the upstream's certificate or check the mirror's clock")
	case errors.As(err, &invalid):
		return explained("certificate is not valid", "check the upstream's certificate chain")
	case alert == "certificate required",
		alert == "handshake failure" && c.ClientCert == "", // TLS 1.2 servers say only this
		isCertificateAlert(alert) && c.ClientCert == "":
		return explained("upstream requires a client certificate", "set client_cert/client_key")
	case isCertificateAlert(alert):
		return explained("upstream refused the mirror's client certificate ("+alert+")",
			"client_cert must be valid and signed by a CA the upstream trusts")
	}
	return err
}

// remoteAlert is the TLS alert the other side sent, e.g. "certificate
// required", or "". crypto/tls reports one as a *net.OpError with the
// operation "remote error"; its alert type is not exported.
func remoteAlert(err error) string {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "remote error" || op.Err == nil {
		return ""
	}
	return strings.TrimPrefix(op.Err.Error(), "tls: ")
}

// isCertificateAlert reports whether a server's alert refuses the client's
// certificate.
func isCertificateAlert(alert string) bool {
	switch alert {
	case "bad certificate", "unsupported certificate", "revoked certificate", "expired certificate",
		"unknown certificate", "unknown certificate authority", "access denied":
		return true
	}
	return false
}
