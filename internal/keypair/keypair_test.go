package keypair

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/internal/testpki"
)

// replace writes data to path and gives it a modification time of its
// own: two writes within the file system's timestamp granularity would
// otherwise look like one.
func replace(t *testing.T, path string, data []byte, mtime time.Time) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

func serial(t *testing.T, p *Pair) string {
	t.Helper()
	cert, err := p.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	return cert.Leaf.SerialNumber.String()
}

func TestReloadKeepsThePairInUseWhenTheNewOneIsBroken(t *testing.T) {
	t.Parallel()
	ca := testpki.NewCA(t, "keypair")
	first, second := ca.Server(t, "first", "localhost"), ca.Server(t, "second", "localhost")
	var changes []error
	p, err := Load(first.CertFile, first.KeyFile, func(err error) { changes = append(changes, err) })
	if err != nil {
		t.Fatal(err)
	}
	want := first.TLS.Leaf.SerialNumber.String()
	if got := serial(t, p); got != want {
		t.Fatalf("serving serial %s, want the first certificate's %s", got, want)
	}

	tests := []struct {
		name       string
		cert, key  []byte
		wantSecond bool
	}{
		{"key of another certificate", first.CertPEM, second.KeyPEM, false},
		{"half-written certificate", first.CertPEM[:len(first.CertPEM)/2], first.KeyPEM, false},
		{"key in the certificate's place", second.KeyPEM, second.KeyPEM, false},
		{"the new pair", second.CertPEM, second.KeyPEM, true},
		{"broken after the new pair", []byte("not PEM"), second.KeyPEM, true},
	}
	mtime := time.Now().Add(-time.Hour)
	for _, tt := range tests {
		mtime = mtime.Add(time.Second)
		replace(t, first.CertFile, tt.cert, mtime)
		replace(t, first.KeyFile, tt.key, mtime)
		err := p.Reload()
		want := first.TLS.Leaf.SerialNumber.String()
		if tt.wantSecond {
			want = second.TLS.Leaf.SerialNumber.String()
		}
		if got := serial(t, p); got != want {
			t.Errorf("%s: serving serial %s after Reload, want %s", tt.name, got, want)
		}
		if loads := err == nil; loads != (tt.name == "the new pair") {
			t.Errorf("%s: Reload() = %v", tt.name, err)
		}
		if err != nil && (strings.Contains(err.Error(), "PRIVATE KEY") || bytes.Contains([]byte(err.Error()), tt.key[30:60])) {
			t.Errorf("%s: the error shows key material: %v", tt.name, err)
		}
	}
	if len(changes) != 0 {
		t.Errorf("explicit reloads were reported as file changes: %v", changes)
	}
}

func TestChangedFilesAreLoadedAtTheNextHandshake(t *testing.T) {
	t.Parallel()
	ca := testpki.NewCA(t, "keypair")
	first, second := ca.Client(t, "first"), ca.Client(t, "second")
	var changes []error
	p, err := Load(first.CertFile, first.KeyFile, func(err error) { changes = append(changes, err) })
	if err != nil {
		t.Fatal(err)
	}
	mtime := time.Now().Add(-time.Hour)
	replace(t, first.CertFile, second.CertPEM, mtime)
	replace(t, first.KeyFile, second.KeyPEM, mtime)
	cert, err := p.GetClientCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cert.Leaf.Subject.CommonName, "second"; got != want {
		t.Fatalf("after the files changed the client presents %q, want %q", got, want)
	}
	if len(changes) != 1 || changes[0] != nil {
		t.Fatalf("changes reported: %v, want one successful load", changes)
	}

	replace(t, first.KeyFile, first.KeyPEM, mtime.Add(time.Second)) // the key of another certificate
	for range 3 {
		if got := serial(t, p); got != second.TLS.Leaf.SerialNumber.String() {
			t.Fatalf("a mismatched key replaced the pair in use (serial %s)", got)
		}
	}
	if len(changes) != 2 || changes[1] == nil {
		t.Fatalf("changes reported: %v, want the failure reported once", changes)
	}
}

func TestLoadRefusesAMismatchedPair(t *testing.T) {
	t.Parallel()
	ca := testpki.NewCA(t, "keypair")
	a, b := ca.Server(t, "a", "localhost"), ca.Server(t, "b", "localhost")
	_, err := Load(a.CertFile, b.KeyFile, nil)
	if err == nil || !strings.Contains(err.Error(), a.CertFile) || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("Load with another certificate's key = %v, want an error naming the file and the mismatch", err)
	}
}
