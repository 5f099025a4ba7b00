// Package keypair keeps a TLS certificate and its private key loaded from
// two PEM files, for a listener (GetCertificate) or a client
// (GetClientCertificate), and loads them again when asked (on SIGHUP) or
// when the files change, so that certificates rotate without a restart.
// A pair that does not load (a half-written file, a key that belongs to
// another certificate) never replaces the one in use.
package keypair

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync"
	"time"
)

// Pair is a certificate and key loaded from files. It is safe for
// concurrent use: every TLS handshake may ask it for the certificate.
type Pair struct {
	certFile, keyFile string
	// changed hears how each load that a change of the files started
	// ended: nil when the new pair is in use, else why the old one stays.
	changed func(error)

	mu sync.Mutex
	// cert is the pair in use; seen is the files' state when they were
	// last read, loaded or not, so a broken file is reported once, not on
	// every handshake.
	cert *tls.Certificate
	seen stamp
}

// stamp is what os.Stat says about both files: a change of either means
// they were replaced. Kubernetes' secret volumes swap a symlink, which
// Stat follows, so they count as a change too.
type stamp struct {
	certTime, keyTime time.Time
	certSize, keySize int64
}

// Load reads the pair from certFile and keyFile. changed, when not nil,
// hears how each later load that a change of the files started ended.
func Load(certFile, keyFile string, changed func(error)) (*Pair, error) {
	p := &Pair{certFile: certFile, keyFile: keyFile, changed: changed}
	st, _ := p.stat()
	cert, err := p.read()
	if err != nil {
		return nil, err
	}
	p.cert, p.seen = cert, st
	return p, nil
}

// Reload reads the files again and uses the pair they hold from the next
// handshake on. When they do not load, the pair in use stays and the
// error says why.
func (p *Pair) Reload() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seen, _ = p.stat()
	return p.reloadLocked()
}

// Leaf is the certificate in use, parsed.
func (p *Pair) Leaf() *x509.Certificate {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cert.Leaf
}

// GetCertificate is a tls.Config.GetCertificate for a listener.
func (p *Pair) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return p.current(), nil
}

// GetClientCertificate is a tls.Config.GetClientCertificate for a client;
// the server asks for it only when it wants a client certificate.
func (p *Pair) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return p.current(), nil
}

// current is the pair to present now, loaded again first if the files
// changed since they were last read. Two stats per handshake are cheap
// next to the handshake itself.
func (p *Pair) current() *tls.Certificate {
	p.mu.Lock()
	st, err := p.stat()
	if err != nil || st == p.seen {
		defer p.mu.Unlock()
		return p.cert
	}
	p.seen = st
	err = p.reloadLocked()
	cert := p.cert
	p.mu.Unlock()
	if p.changed != nil {
		p.changed(err)
	}
	return cert
}

func (p *Pair) reloadLocked() error {
	cert, err := p.read()
	if err != nil {
		return err
	}
	p.cert = cert
	return nil
}

// read loads and checks the pair. Its errors name the files, never their
// contents: crypto/tls's errors say what is wrong, not what the key is.
func (p *Pair) read() (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(p.certFile, p.keyFile)
	if err != nil {
		return nil, fmt.Errorf("loading TLS certificate %s and key %s: %w", p.certFile, p.keyFile, err)
	}
	if cert.Leaf == nil { // GODEBUG=x509keypairleaf=0
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("parsing TLS certificate %s: %w", p.certFile, err)
		}
	}
	return &cert, nil
}

func (p *Pair) stat() (stamp, error) {
	c, err := os.Stat(p.certFile)
	if err != nil {
		return stamp{}, err
	}
	k, err := os.Stat(p.keyFile)
	if err != nil {
		return stamp{}, err
	}
	return stamp{certTime: c.ModTime(), keyTime: k.ModTime(), certSize: c.Size(), keySize: k.Size()}, nil
}
