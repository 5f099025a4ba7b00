package ldapauth_test

import (
	"context"
	"crypto/x509"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/regmirror/regmirror/internal/ldapauth"
	"github.com/regmirror/regmirror/internal/slapdtest"
)

var users = []slapdtest.User{
	{Name: "alice", Password: "alice-password", Groups: []string{"devs", "ops"}, OtherGroups: []string{"admins"}},
	{Name: "bob", Password: "bob-password", Groups: []string{"ops"}},
	{Name: "carol", Password: "carol-password"},
}

func caPool(t *testing.T, s *slapdtest.Server) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(s.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("no certificate in the CA file")
	}
	return pool
}

func newDirectory(t *testing.T, c ldapauth.Config) *ldapauth.Directory {
	t.Helper()
	d, err := ldapauth.New(c)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Logins against a real slapd, reached each way a configuration can say,
// with groups read from memberOf or searched for.
func TestLogin(t *testing.T) {
	t.Parallel()
	s := slapdtest.Start(t, users)
	pool := caPool(t, s)
	base := ldapauth.Config{URL: s.URL, StartTLS: true, RootCAs: pool, BindDN: slapdtest.ReaderDN,
		BindPassword: s.ReaderPassword, UserBase: slapdtest.UserBase}
	with := func(change func(*ldapauth.Config)) ldapauth.Config {
		c := base
		change(&c)
		return c
	}
	configs := map[string]ldapauth.Config{
		"StartTLS, memberOf": with(func(c *ldapauth.Config) { c.MemberOf = true; c.GroupBase = slapdtest.GroupBase }),
		"ldaps, group search": with(func(c *ldapauth.Config) {
			c.URL, c.StartTLS, c.GroupBase = s.TLSURL, false, slapdtest.GroupBase
		}),
		"plain, group search with a filter of its own": with(func(c *ldapauth.Config) {
			c.StartTLS, c.GroupBase, c.GroupFilter = false, slapdtest.GroupBase, "(&(objectClass=groupOfNames)(member={dn}))"
		}),
	}
	cases := []struct {
		name, user, password string
		ok                   bool
		wantName             string
		groups               []string
	}{
		{name: "right password", user: "alice", password: "alice-password", ok: true, wantName: "alice", groups: []string{"devs", "ops"}},
		{name: "another user", user: "bob", password: "bob-password", ok: true, wantName: "bob", groups: []string{"ops"}},
		{name: "user in no group", user: "carol", password: "carol-password", ok: true, wantName: "carol"},
		{name: "name spelled otherwise is the directory's", user: "ALICE", password: "alice-password", ok: true, wantName: "alice", groups: []string{"devs", "ops"}},
		{name: "wrong password", user: "alice", password: "bob-password"},
		{name: "unknown user", user: "mallory", password: "alice-password"},
		{name: "empty password (an anonymous bind would succeed)", user: "alice", password: ""},
		{name: "filter injection", user: "*", password: "alice-password"},
		{name: "filter injection closing the filter", user: "alice)(uid=*", password: "alice-password"},
	}
	for mode, c := range configs {
		d := newDirectory(t, c)
		for _, tc := range cases {
			t.Run(mode+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				u, ok, err := d.Login(t.Context(), tc.user, tc.password)
				if err != nil {
					t.Fatalf("Login: %v", err)
				}
				if ok != tc.ok {
					t.Fatalf("Login(%q) ok = %v, want %v", tc.user, ok, tc.ok)
				}
				if u.Name != tc.wantName || !slices.Equal(u.Groups, tc.groups) {
					t.Errorf("Login(%q) = %+v, want name %q, groups %v", tc.user, u, tc.wantName, tc.groups)
				}
			})
		}
	}
}

// memberOf without group_base names every group; with it, only those
// under it, so that a group of the same name elsewhere grants nothing.
func TestMemberOfKeepsGroupsUnderGroupBase(t *testing.T) {
	t.Parallel()
	s := slapdtest.Start(t, users)
	for _, tc := range []struct {
		groupBase string
		want      []string
	}{
		{groupBase: "", want: []string{"admins", "devs", "ops"}},
		{groupBase: slapdtest.GroupBase, want: []string{"devs", "ops"}},
		{groupBase: slapdtest.OtherGroupBase, want: []string{"admins"}},
	} {
		d := newDirectory(t, ldapauth.Config{URL: s.URL, BindDN: slapdtest.ReaderDN, BindPassword: s.ReaderPassword,
			UserBase: slapdtest.UserBase, MemberOf: true, GroupBase: tc.groupBase})
		u, ok, err := d.Login(t.Context(), "alice", "alice-password")
		if err != nil || !ok {
			t.Fatalf("group_base %q: Login = %v, %v", tc.groupBase, ok, err)
		}
		if !slices.Equal(u.Groups, tc.want) {
			t.Errorf("group_base %q: groups %v, want %v", tc.groupBase, u.Groups, tc.want)
		}
	}
}

// A directory that cannot decide is an error, never a wrong password: the
// caller must tell the user the directory is the problem, and must not
// count a failed guess.
func TestLoginErrors(t *testing.T) {
	t.Parallel()
	s := slapdtest.Start(t, users)
	stopped := slapdtest.Start(t, users)
	stopped.Stop()
	pool := caPool(t, s)
	cases := []struct {
		name string
		c    ldapauth.Config
		want string
	}{
		{name: "server stopped", want: "connecting to",
			c: ldapauth.Config{URL: stopped.URL, BindDN: slapdtest.ReaderDN, BindPassword: stopped.ReaderPassword, UserBase: slapdtest.UserBase}},
		{name: "StartTLS without the CA", want: "certificate",
			c: ldapauth.Config{URL: s.URL, StartTLS: true, BindDN: slapdtest.ReaderDN, BindPassword: s.ReaderPassword, UserBase: slapdtest.UserBase}},
		{name: "ldaps without the CA", want: "certificate",
			c: ldapauth.Config{URL: s.TLSURL, BindDN: slapdtest.ReaderDN, BindPassword: s.ReaderPassword, UserBase: slapdtest.UserBase}},
		{name: "wrong bind password", want: "bind_dn",
			c: ldapauth.Config{URL: s.URL, StartTLS: true, RootCAs: pool, BindDN: slapdtest.ReaderDN, BindPassword: "wrong", UserBase: slapdtest.UserBase}},
		{name: "user base missing", want: "user_base",
			c: ldapauth.Config{URL: s.URL, BindDN: slapdtest.ReaderDN, BindPassword: s.ReaderPassword, UserBase: "ou=nowhere," + slapdtest.BaseDN}},
		{name: "filter finding several users", want: "more than one entry",
			c: ldapauth.Config{URL: s.URL, BindDN: slapdtest.ReaderDN, BindPassword: s.ReaderPassword, UserBase: slapdtest.UserBase,
				UserFilter: "(|(uid={user})(objectClass=inetOrgPerson))"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, ok, err := newDirectory(t, tc.c).Login(t.Context(), "alice", "alice-password")
			if err == nil || ok {
				t.Fatalf("Login = %v, %v; want an error", ok, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "alice-password") || strings.Contains(err.Error(), s.ReaderPassword) {
				t.Errorf("error %q holds a password", err)
			}
		})
	}
}

// A login whose context ends gives up.
func TestLoginHonoursContext(t *testing.T) {
	t.Parallel()
	s := slapdtest.Start(t, users)
	d := newDirectory(t, ldapauth.Config{URL: s.URL, BindDN: slapdtest.ReaderDN, BindPassword: s.ReaderPassword, UserBase: slapdtest.UserBase})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, ok, err := d.Login(ctx, "alice", "alice-password"); err == nil || ok {
		t.Fatalf("Login with an ended context = %v, %v; want an error", ok, err)
	}
}

func TestNewRefusesBadConfigs(t *testing.T) {
	t.Parallel()
	for name, c := range map[string]ldapauth.Config{
		"no URL":                {UserBase: "dc=x"},
		"http URL":              {URL: "http://127.0.0.1", UserBase: "dc=x"},
		"StartTLS over ldaps":   {URL: "ldaps://127.0.0.1", StartTLS: true, UserBase: "dc=x"},
		"no user base":          {URL: "ldap://127.0.0.1"},
		"user filter sans user": {URL: "ldap://127.0.0.1", UserBase: "dc=x", UserFilter: "(uid=alice)"},
		"broken filter":         {URL: "ldap://127.0.0.1", UserBase: "dc=x", UserFilter: "(uid={user}"},
		"broken group base":     {URL: "ldap://127.0.0.1", UserBase: "dc=x", GroupBase: "not a dn"},
	} {
		if _, err := ldapauth.New(c); err == nil {
			t.Errorf("%s: New accepted %+v", name, c)
		}
	}
}
