// Package slapdtest runs a real OpenLDAP server (Debian's slapd) for tests:
// its own configuration, database, CA and certificate in a temporary
// directory, listening on loopback ports for ldap:// (with StartTLS) and
// ldaps://, with the users and groups a test asks for. slapd and ldapadd
// come from scripts/install-slapd.sh; a test fails, never skips, without
// them.
package slapdtest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"

	"github.com/regmirror/regmirror/internal/testnet"
)

// The directory's names.
const (
	// BaseDN is the suffix of the directory.
	BaseDN = "dc=example,dc=org"
	// UserBase holds the users, as inetOrgPerson entries named uid=NAME.
	UserBase = "ou=people," + BaseDN
	// GroupBase holds the groups, as groupOfNames entries named cn=NAME.
	GroupBase = "ou=groups," + BaseDN
	// OtherGroupBase holds groups outside GroupBase, of the same names, so
	// that tests can check groups elsewhere in the tree are not taken.
	OtherGroupBase = "ou=elsewhere," + BaseDN
	// ReaderDN is the service account that may search the directory; its
	// password is Server.ReaderPassword. Anonymous clients may not search.
	ReaderDN = "cn=reader," + BaseDN

	rootDN = "cn=admin," + BaseDN
)

// User is an entry under UserBase and the groups under GroupBase it is a
// member of.
type User struct {
	Name     string
	Password string
	Groups   []string
	// OtherGroups are groups under OtherGroupBase it is a member of.
	OtherGroups []string
}

// Server is a running slapd. Its fields are set once.
type Server struct {
	// URL is ldap://127.0.0.1:PORT, which offers StartTLS.
	URL string
	// TLSURL is ldaps://127.0.0.1:PORT.
	TLSURL string
	// CAFile is the PEM certificate of the CA that signed the server's
	// certificate (for 127.0.0.1).
	CAFile string
	// ReaderPassword is ReaderDN's password; ReaderPasswordFile holds it
	// followed by a newline.
	ReaderPassword     string
	ReaderPasswordFile string

	dir  string
	cmd  *exec.Cmd
	done chan struct{} // closed when slapd has exited
	stop sync.Once
}

// Start runs slapd with users and the groups they name, until the test
// ends or Stop.
func Start(t testing.TB, users []User) *Server {
	t.Helper()
	slapd, ldapadd := program(t, "slapd"), program(t, "ldapadd")
	// Ports are picked free and then handed to slapd, so a test starting
	// another slapd at the same moment may take one first: this slapd then
	// exits, and what answered the wait was the other one. Start again on
	// new ports when that happens.
	const attempts = 3
	for attempt := 1; ; attempt++ {
		s, err := start(t, slapd, ldapadd, users)
		if err == nil {
			return s
		}
		if !s.exited() || attempt == attempts {
			t.Fatal(err)
		}
		t.Logf("slapd exited while starting (a port taken meanwhile?), starting again: %v", err)
	}
}

// start makes one attempt of Start. The server it returns is stopped at
// the test's end, also when err is set.
func start(t testing.TB, slapd, ldapadd string, users []User) (*Server, error) {
	dir := t.TempDir()
	s := &Server{dir: dir, CAFile: filepath.Join(dir, "ca.pem"), ReaderPassword: "reader-" + randomWord(),
		ReaderPasswordFile: filepath.Join(dir, "reader-password"), done: make(chan struct{})}
	if err := writeCertificates(dir); err != nil {
		t.Fatal(err)
	}
	rootPassword := randomWord()
	if err := s.writeConfig(rootPassword); err != nil {
		t.Fatal(err)
	}
	plain, tls := testnet.FreeAddr(t), testnet.FreeAddr(t)
	s.URL, s.TLSURL = "ldap://"+plain, "ldaps://"+tls
	s.cmd = exec.Command(slapd, "-d", "0", "-f", filepath.Join(dir, "slapd.conf"), "-h", s.URL+"/ "+s.TLSURL+"/")
	var log bytes.Buffer
	s.cmd.Stdout, s.cmd.Stderr = &log, &log
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("starting slapd: %v", err)
	}
	go func() { s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("slapd output:\n%s", log.String())
		}
	})
	if err := s.waitListening(plain, tls); err != nil {
		return s, fmt.Errorf("%v\nslapd output:\n%s", err, log.String())
	}
	if err := s.seed(ldapadd, rootPassword, users); err != nil {
		return s, err
	}
	if s.exited() {
		return s, fmt.Errorf("slapd exited after it was seeded\nslapd output:\n%s", log.String())
	}
	return s, nil
}

// exited reports whether slapd has exited.
func (s *Server) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// Stop ends slapd and waits until it has exited; later logins fail to
// connect. Safe to call more than once.
func (s *Server) Stop() {
	s.stop.Do(func() {
		_ = s.cmd.Process.Signal(os.Interrupt)
		<-s.done
	})
}

// program finds a program that scripts/install-slapd.sh installs, in PATH
// or in /usr/sbin, which a user's PATH often lacks.
func program(t testing.TB, name string) string {
	if path, err := exec.LookPath(name); err == nil {
		return path
	}
	if path := filepath.Join("/usr/sbin", name); isExecutable(path) {
		return path
	}
	t.Fatalf("%s is not installed: run scripts/install-slapd.sh", name)
	return ""
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode()&0o111 != 0
}

func randomWord() string {
	var b [12]byte
	rand.Read(b[:])
	return fmt.Sprintf("%x", b)
}

var configTemplate = template.Must(template.New("slapd.conf").Parse(`# Written by slapdtest for one test.
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
pidfile {{.Dir}}/slapd.pid
argsfile {{.Dir}}/slapd.args
TLSCACertificateFile {{.Dir}}/ca.pem
TLSCertificateFile {{.Dir}}/server.pem
TLSCertificateKeyFile {{.Dir}}/server-key.pem

database mdb
suffix "{{.Base}}"
rootdn "{{.Root}}"
rootpw {{.RootPassword}}
directory {{.Dir}}/db
overlay memberof
access to attrs=userPassword
	by anonymous auth
	by * none
access to *
	by dn.exact="{{.Reader}}" read
	by self read
	by * none
`))

func (s *Server) writeConfig(rootPassword string) error {
	if err := os.Mkdir(filepath.Join(s.dir, "db"), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(s.ReaderPasswordFile, []byte(s.ReaderPassword+"\n"), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(s.dir, "root-password"), []byte(rootPassword), 0o600); err != nil {
		return err
	}
	var conf bytes.Buffer
	err := configTemplate.Execute(&conf, map[string]string{"Dir": s.dir, "Base": BaseDN, "Root": rootDN,
		"RootPassword": rootPassword, "Reader": ReaderDN})
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(s.dir, "slapd.conf"), conf.Bytes(), 0o600)
}

// waitListening waits until slapd accepts connections on both addresses,
// or fails when slapd exits first or takes longer than a slow machine could.
func (s *Server) waitListening(addrs ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for _, addr := range addrs {
		for {
			var d net.Dialer
			conn, err := d.DialContext(ctx, "tcp", addr)
			if err == nil {
				conn.Close()
				break
			}
			select {
			case <-s.done:
				return errors.New("slapd exited before it listened")
			case <-ctx.Done():
				return fmt.Errorf("slapd does not listen on %s: %w", addr, err)
			case <-tick.C:
			}
		}
	}
	return nil
}

// seed adds the entries with ldapadd, through slapd, so that the memberof
// overlay sets the users' memberOf attributes.
func (s *Server) seed(ldapadd, rootPassword string, users []User) error {
	path := filepath.Join(s.dir, "seed.ldif")
	if err := os.WriteFile(path, []byte(seedLDIF(s.ReaderPassword, users)), 0o600); err != nil {
		return err
	}
	out, err := exec.Command(ldapadd, "-x", "-H", s.URL, "-D", rootDN, "-y", filepath.Join(s.dir, "root-password"),
		"-f", path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ldapadd: %v\n%s", err, out)
	}
	return nil
}

// seedLDIF is the directory: the organisational units, the reader, the
// users, then the groups (groupOfNames needs a member, and the memberof
// overlay needs the members to exist).
func seedLDIF(readerPassword string, users []User) string {
	var b strings.Builder
	entry := func(lines ...string) { b.WriteString(strings.Join(lines, "\n") + "\n\n") }
	entry("dn: "+BaseDN, "objectClass: dcObject", "objectClass: organization", "o: example", "dc: example")
	for _, ou := range []string{UserBase, GroupBase, OtherGroupBase} {
		name := strings.TrimPrefix(strings.SplitN(ou, ",", 2)[0], "ou=")
		entry("dn: "+ou, "objectClass: organizationalUnit", "ou: "+name)
	}
	entry("dn: "+ReaderDN, "objectClass: organizationalRole", "objectClass: simpleSecurityObject",
		"cn: reader", "userPassword: "+readerPassword)
	members := map[string][]string{}
	var groups []string
	addMember := func(groupDN, userDN string) {
		if _, ok := members[groupDN]; !ok {
			groups = append(groups, groupDN)
		}
		members[groupDN] = append(members[groupDN], userDN)
	}
	for _, u := range users {
		dn := UserDN(u.Name)
		entry("dn: "+dn, "objectClass: inetOrgPerson", "uid: "+u.Name, "cn: "+u.Name, "sn: "+u.Name,
			"userPassword: "+u.Password)
		for _, g := range u.Groups {
			addMember("cn="+g+","+GroupBase, dn)
		}
		for _, g := range u.OtherGroups {
			addMember("cn="+g+","+OtherGroupBase, dn)
		}
	}
	for _, g := range groups {
		lines := []string{"dn: " + g, "objectClass: groupOfNames", "cn: " + strings.TrimPrefix(strings.SplitN(g, ",", 2)[0], "cn=")}
		for _, m := range members[g] {
			lines = append(lines, "member: "+m)
		}
		entry(lines...)
	}
	return b.String()
}

// UserDN is the distinguished name of the user name.
func UserDN(name string) string { return "uid=" + name + "," + UserBase }

// writeCertificates makes a CA and a certificate for 127.0.0.1 signed by
// it: ca.pem, server.pem and server-key.pem in dir.
func writeCertificates(dir string) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "slapdtest CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	files := map[string]*pem.Block{
		"ca.pem":         {Type: "CERTIFICATE", Bytes: caDER},
		"server.pem":     {Type: "CERTIFICATE", Bytes: leafDER},
		"server-key.pem": {Type: "PRIVATE KEY", Bytes: keyDER},
	}
	for name, block := range files {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			return err
		}
	}
	return nil
}
