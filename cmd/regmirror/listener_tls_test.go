package main

import (
	"crypto/tls"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/regmirror/regmirror/internal/testpki"
)

// The listener's certificate is replaced on SIGHUP and when its files
// change; files that do not load are refused with an error in the log,
// and the certificate in use stays.
func TestListenerCertificateReloads(t *testing.T) {
	t.Parallel()
	ca := testpki.NewCA(t, "corp")
	first, second, third := ca.Server(t, "first", "127.0.0.1"), ca.Server(t, "second", "127.0.0.1"), ca.Server(t, "third", "127.0.0.1")
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	// Each write gets a modification time of its own: two writes within
	// the file system's timestamp granularity would look like one.
	mtime := time.Now().Add(-time.Hour)
	install := func(cert, key []byte) {
		t.Helper()
		mtime = mtime.Add(time.Second)
		for path, data := range map[string][]byte{certFile: cert, keyFile: key} {
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(path, mtime, mtime); err != nil {
				t.Fatal(err)
			}
		}
	}
	install(first.CertPEM, first.KeyPEM)

	cfg := Config{DataDir: t.TempDir(), TLSCert: certFile, TLSKey: keyFile}
	requests := make(chan os.Signal)
	applied := make(chan error)
	var logs logBuffer
	base := startDaemonReloading(t, cfg, slog.New(slog.NewTextHandler(&logs, nil)), reloadSource{
		load:     func() (Config, error) { return cfg.withDefaults(), nil },
		requests: requests,
		applied:  func(err error) { applied <- err },
	})
	hup := func() error {
		requests <- syscall.SIGHUP
		return <-applied
	}
	// served is the common name of the certificate a new connection sees.
	served := func() string {
		t.Helper()
		conn, err := tls.Dial("tcp", strings.TrimPrefix(base, "http://"), &tls.Config{RootCAs: ca.Pool()})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	}

	if got := served(); got != "first" {
		t.Fatalf("serving %q at start, want first", got)
	}
	install(second.CertPEM, second.KeyPEM)
	if err := hup(); err != nil {
		t.Fatalf("SIGHUP with a new certificate: %v", err)
	}
	if got := served(); got != "second" {
		t.Fatalf("serving %q after SIGHUP, want second", got)
	}

	install(second.CertPEM[:len(second.CertPEM)/2], second.KeyPEM) // a half-written file
	if err := hup(); err == nil {
		t.Fatal("SIGHUP with a broken certificate reported no error")
	}
	if got := served(); got != "second" {
		t.Fatalf("serving %q after a broken certificate was refused, want second", got)
	}
	if !strings.Contains(logs.String(), "TLS certificate not reloaded: the one in use stays") || !strings.Contains(logs.String(), certFile) {
		t.Errorf("the log does not say the broken certificate was refused:\n%s", logs.String())
	}

	install(third.CertPEM, third.KeyPEM) // no SIGHUP: the change alone
	if got := served(); got != "third" {
		t.Fatalf("serving %q after the files changed, want third", got)
	}
	if strings.Contains(logs.String(), "PRIVATE KEY") || strings.Contains(logs.String(), string(second.KeyPEM[40:80])) {
		t.Error("key material reached the log")
	}
}
