package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/internal/slapdtest"
	"github.com/regmirror/regmirror/mirror"
)

// The directory of the LDAP tests: alice is a developer, bob is in
// operations only, and ci-bot is in the htpasswd file.
var ldapUsers = []slapdtest.User{
	{Name: "alice", Password: "alice-ldap-password", Groups: []string{"devs"}},
	{Name: "bob", Password: "bob-ldap-password", Groups: []string{"ops"}, OtherGroups: []string{"devs"}},
}

// ldapConfig is a daemon whose users come from slapd s and an htpasswd
// file holding ci-bot; the devs group may push to team/*, ci-bot anywhere
// hosted, and anyone may pull team/*.
func ldapConfig(t *testing.T, cfg Config, s *slapdtest.Server, memberOf bool) Config {
	t.Helper()
	path := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(path, []byte(htpasswdLine(t, "ci-bot", "ci-bot-password", mirror.MinBcryptCost)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Auth.LDAP = LDAPConfig{URL: s.URL, StartTLS: true, CAFile: s.CAFile,
		BindDN: slapdtest.ReaderDN, BindPasswordFile: s.ReaderPasswordFile,
		UserBase: slapdtest.UserBase, MemberOf: memberOf, GroupBase: slapdtest.GroupBase}
	cfg.Hosted = HostedConfig{Htpasswd: path, Repositories: []string{"team/*", "ops/*"}, Permissions: []PermissionConfig{
		{Repositories: []string{"team/*"}, Groups: []string{"devs"}, Actions: []string{"pull", "push"}},
		{Repositories: []string{"team/*", "ops/*"}, Users: []string{"ci-bot"}, Actions: []string{"pull", "push"}},
		{Repositories: []string{"team/*"}, Anonymous: true, Actions: []string{"pull"}},
	}}
	if err := cfg.withDefaults().validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// tokenLogin logs in the way `docker login` does, at the token endpoint,
// and returns the status and the error message, if any.
func tokenLogin(t *testing.T, base, user, password string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+"/v2/token?account="+user+"&offline_token=true&service=regmirror", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(user, password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var errs struct {
		Errors []struct{ Message string } `json:"errors"`
	}
	if json.Unmarshal(body, &errs) == nil && len(errs.Errors) > 0 {
		return resp.StatusCode, errs.Errors[0].Message
	}
	return resp.StatusCode, ""
}

// pushAs pushes a small random image to repo:tag on the daemon at base.
func pushAs(t *testing.T, base, repo, user, password string) error {
	t.Helper()
	img, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref := mustRef(t, strings.TrimPrefix(base, "http://")+"/"+repo)
	return remote.Write(ref, img, remote.WithAuth(authn.FromConfig(authn.AuthConfig{Username: user, Password: password})))
}

// denied reports whether a push failed with 403 (DENIED, in a body when
// the request that failed had one).
func denied(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "DENIED") || strings.Contains(err.Error(), "403 Forbidden"))
}

// Users from LDAP log in and push where their directory groups allow, next
// to the users of the htpasswd file; a user outside the allowed group is
// refused. Groups come from memberOf or from a group search.
func TestLDAPUsersPushByGroup(t *testing.T) {
	t.Parallel()
	for _, memberOf := range []bool{true, false} {
		name := map[bool]string{true: "memberOf", false: "group search"}[memberOf]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := slapdtest.Start(t, ldapUsers)
			_, cfg := startHub(t)
			var logs logBuffer
			base := startDaemonLogging(t, ldapConfig(t, cfg, s, memberOf), slog.New(slog.NewTextHandler(&logs, nil)))

			if status, msg := tokenLogin(t, base, "alice", "alice-ldap-password"); status != http.StatusOK {
				t.Fatalf("alice's login = %d %q, want 200", status, msg)
			}
			if status, msg := tokenLogin(t, base, "alice", "bob-ldap-password"); status != http.StatusUnauthorized || msg != "incorrect username or password" {
				t.Errorf("alice's login with a wrong password = %d %q, want 401 incorrect username or password", status, msg)
			}
			if err := pushAs(t, base, "team/app:1", "alice", "alice-ldap-password"); err != nil {
				t.Errorf("alice (devs) pushing team/app: %v", err)
			}
			if err := pushAs(t, base, "team/app:2", "Alice", "alice-ldap-password"); err != nil {
				t.Errorf("Alice, as the directory spells alice, pushing team/app: %v", err)
			}
			// bob is in a devs group outside group_base: it grants nothing.
			if err := pushAs(t, base, "team/app:3", "bob", "bob-ldap-password"); !denied(err) {
				t.Errorf("bob (ops) pushing team/app: err %v, want 403 DENIED", err)
			}
			if err := pushAs(t, base, "ops/tool:1", "alice", "alice-ldap-password"); !denied(err) {
				t.Errorf("alice pushing ops/tool, which no permission gives her: err %v, want 403 DENIED", err)
			}
			if err := pushAs(t, base, "ops/tool:1", "ci-bot", "ci-bot-password"); err != nil {
				t.Errorf("ci-bot of the htpasswd file pushing ops/tool: %v", err)
			}
			for _, secret := range []string{"alice-ldap-password", "bob-ldap-password", s.ReaderPassword} {
				if strings.Contains(logs.String(), secret) {
					t.Errorf("a password reached the log")
				}
			}
		})
	}
}

// A successful login is remembered for auth.ldap.cache_ttl: with slapd
// stopped, alice logs in again with the same password. Logins the
// directory would have to answer fail with a message that names it, and
// the log says why; anonymous pulls, hosted and proxied, never ask it.
func TestLDAPStoppedFailsLoginsClearlyAndNotPulls(t *testing.T) {
	t.Parallel()
	s := slapdtest.Start(t, ldapUsers)
	hub, cfg := startHub(t)
	img, err := hub.PushImage("library/alpine", "3", registrytest.ImageOptions{Layers: 1, LayerSize: 2048, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	var logs logBuffer
	base := startDaemonLogging(t, ldapConfig(t, cfg, s, true), slog.New(slog.NewTextHandler(&logs, nil)))
	if err := pushAs(t, base, "team/app:1", "alice", "alice-ldap-password"); err != nil {
		t.Fatalf("alice pushing team/app: %v", err)
	}

	s.Stop()
	if status, msg := tokenLogin(t, base, "alice", "alice-ldap-password"); status != http.StatusOK {
		t.Errorf("alice's login just after a successful one, slapd stopped = %d %q, want 200 from memory", status, msg)
	}
	if err := pushAs(t, base, "team/app:2", "alice", "alice-ldap-password"); err != nil {
		t.Errorf("alice pushing with slapd stopped, her login remembered: %v", err)
	}
	for _, u := range []struct{ user, password string }{{"bob", "bob-ldap-password"}, {"alice", "another-password"}} {
		status, msg := tokenLogin(t, base, u.user, u.password)
		if status != http.StatusUnauthorized || !strings.Contains(msg, "user directory (LDAP) is not answering") {
			t.Errorf("%s's login with slapd stopped = %d %q, want 401 naming the directory", u.user, status, msg)
		}
	}
	if err := pushAs(t, base, "team/app:3", "bob", "bob-ldap-password"); err == nil || !strings.Contains(err.Error(), "not answering") {
		t.Errorf("bob pushing with slapd stopped: err %v, want the directory named", err)
	}
	if !strings.Contains(logs.String(), "the user directory failed") || !strings.Contains(logs.String(), "connecting to") {
		t.Errorf("the log does not say the directory failed:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "bob-ldap-password") || strings.Contains(logs.String(), s.ReaderPassword) {
		t.Error("a password reached the log")
	}

	c := newClient(t, base)
	if status, _ := c.do(http.MethodGet, "/v2/team/app/manifests/1"); status != http.StatusOK {
		t.Errorf("anonymous pull of hosted team/app:1 with slapd stopped = %d, want 200", status)
	}
	c.pullImage("library/alpine", "3", img)
}

// auth.ldap is validated without dialling: what it needs, what goes
// together, and permissions naming the directory's groups.
func TestLDAPConfig(t *testing.T) {
	t.Parallel()
	const ldap = "auth:\n  ldap:\n    url: ldaps://ldap.example.com\n    user_base: ou=people,dc=example,dc=com\n"
	runConfigCases(t, []configCase{
		{
			name: "LDAP alone turns hosting on",
			yaml: ldap + "    member_of: true\nhosted:\n  repositories: [\"team/*\"]\n  permissions:\n    - {repositories: [\"team/*\"], groups: [devs], actions: [push]}\n",
			check: func(t *testing.T, c Config) {
				if c.Auth.LDAP.URL != "ldaps://ldap.example.com" || !c.Auth.LDAP.MemberOf || c.Hosted.Permissions[0].Groups[0] != "devs" {
					t.Errorf("auth.ldap = %+v", c.Auth.LDAP)
				}
			},
		},
		{
			name:    "a group neither hosted.groups nor the directory knows",
			yaml:    ldap + "hosted:\n  repositories: [\"team/*\"]\n  permissions:\n    - {repositories: [\"team/*\"], groups: [devs], actions: [push]}\n",
			wantErr: `names group "devs"`,
		},
		{name: "no user_base", yaml: "auth:\n  ldap:\n    url: ldaps://ldap.example.com\n", wantErr: "user_base is required"},
		{name: "not an LDAP URL", yaml: "auth:\n  ldap:\n    url: https://ldap.example.com\n    user_base: dc=x\n", wantErr: "want ldap://"},
		{name: "StartTLS over ldaps", yaml: ldap + "    start_tls: true\n", wantErr: "start_tls is for ldap://"},
		{name: "bind_dn without its password", yaml: ldap + "    bind_dn: cn=reader,dc=x\n", wantErr: "bind_dn and bind_password_file go together"},
		{name: "negative cache_ttl", yaml: ldap + "    cache_ttl: -1s\n", wantErr: "must not be negative"},
		{name: "settings without a URL", yaml: "auth:\n  ldap:\n    user_base: dc=x\n", wantErr: "set url"},
		{name: "broken filter", yaml: ldap + "    user_filter: \"(uid={user}\"\n", wantErr: "filter"},
	})
}
