//go:build e2e

package e2e_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/internal/slapdtest"
	"github.com/regmirror/regmirror/scripts/e2e"
)

// The directory of the LDAP test: alice and carol are developers, bob is
// in operations only.
var ldapUsers = []slapdtest.User{
	{Name: "alice", Password: "alice-e2e-ldap-password", Groups: []string{"devs"}},
	{Name: "bob", Password: "bob-e2e-ldap-password", Groups: []string{"ops"}},
	{Name: "carol", Password: "carol-e2e-ldap-password", Groups: []string{"devs"}},
}

// TestDockerLoginAndPushAsLDAPUser: with users from a real slapd (StartTLS,
// the test's CA, a service account, groups from a group search), `docker
// login` as a developer and `docker push` work; a user outside the devs
// group logs in but is refused the push. With slapd stopped, `docker login`
// fails with a message naming the directory, and anonymous pulls, of the
// pushed image and of a proxied one, still work.
func TestDockerLoginAndPushAsLDAPUser(t *testing.T) {
	hub := registrytest.New(t, registrytest.Options{})
	ix, err := hub.PushIndex("library/node", "10", registrytest.ImageOptions{Layers: 1, LayerSize: 64 << 10, Seed: 15})
	if err != nil {
		t.Fatal(err)
	}
	ldap := slapdtest.Start(t, ldapUsers)
	mirrorURL, logPath := startLDAPRegmirror(t, hub.URL(), ldap)
	mirrorHost := strings.TrimPrefix(mirrorURL, "http://")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()

	d := e2e.StartDockerd(t, mirrorURL)
	image := mirrorHost + "/team/app:1"
	if out, err := d.DockerInput(ctx, bytes.NewReader(tinyRootfs(t)), "import", "-", image); err != nil {
		t.Fatalf("docker import: %v\n%s", err, out)
	}
	login := func(user, password string) (string, error) {
		return d.DockerInput(ctx, strings.NewReader(password+"\n"), "login", mirrorHost, "--username", user, "--password-stdin")
	}

	if out, err := login("alice", "wrong-password"); err == nil || !strings.Contains(out+err.Error(), "incorrect username or password") {
		t.Fatalf("docker login as alice with a wrong password: err %v, want incorrect username or password\n%s", err, out)
	}
	if out, err := login("alice", ldapUsers[0].Password); err != nil {
		t.Fatalf("docker login as alice (LDAP): %v\n%s", err, out)
	}
	if out, err := d.Docker(ctx, "push", image); err != nil {
		t.Fatalf("docker push as alice (devs): %v\n%s", err, out)
	}
	pushedID := inspect(ctx, t, d, image, "{{.Id}}")

	other := mirrorHost + "/team/app:2"
	if out, err := d.Docker(ctx, "tag", image, other); err != nil {
		t.Fatalf("docker tag: %v\n%s", err, out)
	}
	if out, err := login("bob", ldapUsers[1].Password); err != nil {
		t.Fatalf("docker login as bob (LDAP, not in devs): %v\n%s", err, out)
	}
	if out, err := d.Docker(ctx, "push", other); err == nil || !strings.Contains(out+err.Error(), "denied") {
		t.Fatalf("docker push as bob (ops): err %v, want it denied\n%s", err, out)
	}

	ldap.Stop()
	out, err := login("carol", ldapUsers[2].Password)
	if err == nil || !strings.Contains(out+err.Error(), "the user directory (LDAP) is not answering") {
		t.Fatalf("docker login as carol with slapd stopped: err %v, want the directory named\n%s", err, out)
	}
	t.Logf("docker login with slapd stopped says: %s", strings.TrimSpace(out+" "+err.Error()))
	if log, _ := os.ReadFile(logPath); !strings.Contains(string(log), "the user directory failed") {
		t.Errorf("regmirror's log does not say the directory failed")
	}

	if out, err := d.Docker(ctx, "logout", mirrorHost); err != nil {
		t.Fatalf("docker logout: %v\n%s", err, out)
	}
	if out, err := d.Docker(ctx, "rmi", image, other); err != nil {
		t.Fatalf("docker rmi: %v\n%s", err, out)
	}
	pull(ctx, t, d, "team/app:1")
	if id := inspect(ctx, t, d, "team/app:1", "{{.Id}}"); id != pushedID {
		t.Fatalf("pulled team/app:1 has image ID %s, want the pushed %s", id, pushedID)
	}
	pull(ctx, t, d, "node:10")
	if id := inspect(ctx, t, d, "node:10", "{{.Id}}"); id != ix.Images[0].Config.Digest.String() {
		t.Fatalf("node:10 has image ID %s, want the linux/amd64 config digest %s", id, ix.Images[0].Config.Digest)
	}
}

// startLDAPRegmirror runs the daemon under test with users from slapd s:
// devs may push to team/*, anyone may pull it.
func startLDAPRegmirror(t *testing.T, upstreamURL string, s *slapdtest.Server) (url, logPath string) {
	t.Helper()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"config.yaml": fmt.Sprintf(`upstreams:
  - host: docker.io
    url: %s
auth:
  ldap:
    url: %s
    start_tls: true
    ca_file: %s
    bind_dn: %s
    bind_password_file: %s
    user_base: %s
    group_base: %s
hosted:
  repositories: ["team/*"]
  permissions:
    - {repositories: ["team/*"], groups: [devs], actions: [pull, push]}
    - {repositories: ["team/*"], anonymous: true, actions: [pull]}
`, upstreamURL, s.URL, s.CAFile, slapdtest.ReaderDN, s.ReaderPasswordFile, slapdtest.UserBase, slapdtest.GroupBase)})
	secrets := []string{s.ReaderPassword}
	for _, u := range ldapUsers {
		secrets = append(secrets, u.Password)
	}
	return runRegmirror(t, dir, secrets...)
}
