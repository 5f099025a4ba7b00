// Package testpki makes the certificates TLS tests need: a certificate
// authority generated in the test, and server and client certificates it
// signs, as PEM files and as crypto/tls values. Nothing here is fit for
// anything but tests: keys are small and live in temporary directories.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a certificate authority made for one test.
type CA struct {
	Cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// CertPEM is the CA's certificate, PEM-encoded; CertFile holds it.
	CertPEM  []byte
	CertFile string
	dir      string
}

// NewCA makes a CA named name, with its certificate written to a file in
// a temporary directory of tb.
func NewCA(tb testing.TB, name string) *CA {
	tb.Helper()
	key := newKey(tb)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(tb),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	ca := &CA{Cert: cert, key: key, CertPEM: encode("CERTIFICATE", der), dir: tb.TempDir()}
	ca.CertFile = ca.write(tb, name+"-ca.pem", ca.CertPEM)
	return ca
}

// Pool is a pool holding only the CA.
func (ca *CA) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return pool
}

// Leaf is a certificate the CA signed and its key.
type Leaf struct {
	// TLS is the pair for a tls.Config.
	TLS tls.Certificate
	// CertPEM and KeyPEM are the certificate and its PKCS #8 key,
	// PEM-encoded; CertFile and KeyFile hold them.
	CertPEM, KeyPEM   []byte
	CertFile, KeyFile string
}

// Server issues a server certificate for the host names and IP addresses
// in hosts, e.g. "127.0.0.1" and "localhost".
func (ca *CA) Server(tb testing.TB, name string, hosts ...string) Leaf {
	tb.Helper()
	tmpl := ca.template(tb, name, x509.ExtKeyUsageServerAuth)
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return ca.issue(tb, name, tmpl)
}

// Client issues a client certificate for the common name name.
func (ca *CA) Client(tb testing.TB, name string) Leaf {
	tb.Helper()
	return ca.issue(tb, name, ca.template(tb, name, x509.ExtKeyUsageClientAuth))
}

func (ca *CA) template(tb testing.TB, name string, usage x509.ExtKeyUsage) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber: serial(tb),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
}

func (ca *CA) issue(tb testing.TB, name string, tmpl *x509.Certificate) Leaf {
	tb.Helper()
	key := newKey(tb)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		tb.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	leaf := Leaf{CertPEM: encode("CERTIFICATE", der), KeyPEM: encode("PRIVATE KEY", keyDER)}
	if leaf.TLS, err = tls.X509KeyPair(leaf.CertPEM, leaf.KeyPEM); err != nil {
		tb.Fatal(err)
	}
	leaf.CertFile = ca.write(tb, name+".crt", leaf.CertPEM)
	leaf.KeyFile = ca.write(tb, name+".key", leaf.KeyPEM)
	return leaf
}

func (ca *CA) write(tb testing.TB, name string, data []byte) string {
	tb.Helper()
	path := filepath.Join(ca.dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

func newKey(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return key
}

func serial(tb testing.TB) *big.Int {
	tb.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

func encode(kind string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der})
}
