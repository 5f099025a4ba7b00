package credentials

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

func TestHostKey(t *testing.T) {
	t.Parallel()
	tests := []struct{ host, want string }{
		{"docker.io", "DOCKER_IO"},
		{"index.docker.io", "DOCKER_IO"},
		{"registry-1.docker.io", "DOCKER_IO"},
		{"ghcr.io", "GHCR_IO"},
		{"127.0.0.1:5000", "127_0_0_1_5000"},
		{"My-Registry.example.com", "MY_REGISTRY_EXAMPLE_COM"},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			t.Parallel()
			if got := HostKey(tt.host); got != tt.want {
				t.Errorf("HostKey(%q) = %q, want %q", tt.host, got, tt.want)
			}
		})
	}
	user, pass := EnvNames("ghcr.io")
	if user != "REGMIRROR_UPSTREAM_GHCR_IO_USERNAME" || pass != "REGMIRROR_UPSTREAM_GHCR_IO_PASSWORD" {
		t.Errorf("EnvNames(ghcr.io) = %s, %s", user, pass)
	}
}

// dockerConfigDir writes a docker config.json with Hub and ghcr.io
// entries, and a credential helper for helper.test, into a temp dir, and
// points DOCKER_CONFIG, HOME and PATH at it. With credsStore the helper
// also answers for every other host, as docker's desktop stores do.
func dockerConfigDir(t *testing.T, credsStore bool) {
	t.Helper()
	dir := t.TempDir()
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	config := fmt.Sprintf(`{
		"auths": {
			"https://index.docker.io/v1/": {"auth": %q},
			"ghcr.io": {"auth": %q}
		},
		"credHelpers": {"helper.test": "regmirrortest"}%s
	}`, b64("hubuser:hubpass"), b64("ghcruser:ghcrpass"), map[bool]string{true: `, "credsStore": "regmirrortest"`}[credsStore])
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "bin")
	helper := "#!/bin/sh\nread server\nprintf '{\"ServerURL\":\"%s\",\"Username\":\"helperuser\",\"Secret\":\"helpersecret\"}' \"$server\"\n"
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "docker-credential-regmirrortest"), []byte(helper), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", dir)
	t.Setenv("HOME", t.TempDir())
	t.Setenv("REGISTRY_AUTH_FILE", "")
	t.Setenv("XDG_RUNTIME_DIR", "")
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
}

// TestLookupOrder cannot run in parallel: the docker config keychain reads
// DOCKER_CONFIG and PATH from the process environment.
func TestLookupOrder(t *testing.T) {
	dockerConfigDir(t, false)
	passwordFile := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(passwordFile, []byte("filepass\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("REGMIRROR_UPSTREAM_DOCKER_IO_USERNAME", "envhub")
	t.Setenv("REGMIRROR_UPSTREAM_DOCKER_IO_PASSWORD", "envhubpass")
	t.Setenv("REGMIRROR_UPSTREAM_GHCR_IO_USERNAME", "envghcr")
	t.Setenv("REGMIRROR_UPSTREAM_GHCR_IO_PASSWORD", "envghcrpass")
	t.Setenv("REGMIRROR_UPSTREAM_127_0_0_1_5000_USERNAME", "envlocal")
	t.Setenv("REGMIRROR_UPSTREAM_127_0_0_1_5000_PASSWORD", "envlocalpass")

	configured := []string{"docker.io", "ghcr.io", "helper.test", "127.0.0.1:5000", "nothing.example"}
	withStatic := Config{Hosts: configured, Static: map[string]Static{
		"docker.io": {Username: "statichub", Password: "statichubpass"},
		"quay.io":   {Username: "filequay", PasswordFile: passwordFile},
	}}
	listed := Config{Hosts: configured}
	tests := []struct {
		name       string
		cfg        Config
		host       string
		wantSource Source // empty: anonymous
		wantUser   string
		wantPass   string
	}{
		{"static beats docker config and env", withStatic, "docker.io", SourceStatic, "statichub", "statichubpass"},
		{"static under a Hub alias", withStatic, "registry-1.docker.io", SourceStatic, "statichub", "statichubpass"},
		{"static password file", withStatic, "quay.io", SourceStatic, "filequay", "filepass"},
		{"docker config for Hub under its v1 key", listed, "docker.io", SourceDockerConfig, "hubuser", "hubpass"},
		{"docker config for Hub alias", listed, "index.docker.io", SourceDockerConfig, "hubuser", "hubpass"},
		{"docker config beats env", listed, "ghcr.io", SourceDockerConfig, "ghcruser", "ghcrpass"},
		{"credential helper", listed, "helper.test", SourceDockerConfig, "helperuser", "helpersecret"},
		{"env with port in host", listed, "127.0.0.1:5000", SourceEnv, "envlocal", "envlocalpass"},
		{"anonymous", withStatic, "nothing.example", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := New(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			auth, err := k.Lookup(context.Background(), tt.host)
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantSource == "" {
				if auth != authn.Anonymous {
					t.Fatalf("got %v, want anonymous", auth)
				}
				return
			}
			c, ok := auth.(*Credential)
			if !ok {
				t.Fatalf("got %T, want *Credential", auth)
			}
			cfg, _ := c.Authorization()
			if c.Source() != tt.wantSource || cfg.Username != tt.wantUser || cfg.Password != tt.wantPass {
				t.Errorf("got %s %s/%s, want %s %s/%s", c.Source(), cfg.Username, cfg.Password, tt.wantSource, tt.wantUser, tt.wantPass)
			}
		})
	}

	// As an authn.Keychain, through ggcr's own names for Docker Hub.
	k, err := New(listed)
	if err != nil {
		t.Fatal(err)
	}
	reg, _ := name.NewRegistry("docker.io")
	auth, err := authn.Resolve(context.Background(), k, reg.Repo("library", "node"))
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := auth.(*Credential); !ok || c.Username() != "hubuser" {
		t.Errorf("Resolve(docker.io/library/node) = %v, want hubuser", auth)
	}
}

func TestLookupErrors(t *testing.T) {
	t.Parallel()
	env := map[string]string{"REGMIRROR_UPSTREAM_HALF_EXAMPLE_USERNAME": "u"}
	passwordFile := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(passwordFile, []byte("rotating-secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := New(Config{Hosts: []string{"half.example"}, Static: map[string]Static{"gone.example": {Username: "u", PasswordFile: passwordFile}}})
	if err != nil {
		t.Fatal(err)
	}
	k.docker = authn.NewMultiKeychain() // keep the machine's docker config out
	k.lookupEnv = func(key string) (string, bool) { v, ok := env[key]; return v, ok }
	if err := os.Remove(passwordFile); err != nil {
		t.Fatal(err)
	}

	tests := []struct{ host, wantErr string }{
		{"half.example", "REGMIRROR_UPSTREAM_HALF_EXAMPLE_PASSWORD"},
		{"gone.example", "reading password file"},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			t.Parallel()
			_, err := k.Lookup(context.Background(), tt.host)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Lookup(%s) error %v, want one mentioning %q", tt.host, err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "rotating-secret") {
				t.Errorf("error leaks the secret: %v", err)
			}
		})
	}
}

// A host nobody configured gets no credential from any source, however
// close its name is to a configured one: not the environment's (whose
// variable names registry-gitlab.com shares with registry.gitlab.com), not
// a credential store that answers for every host. With allow_any_upstream
// such hosts are the ones clients name. Not parallel: the docker config
// keychain reads DOCKER_CONFIG and PATH from the process environment.
func TestUnconfiguredHostsGetNoCredentials(t *testing.T) {
	dockerConfigDir(t, true)
	t.Setenv("REGMIRROR_UPSTREAM_REGISTRY_GITLAB_COM_USERNAME", "gitlabbot")
	t.Setenv("REGMIRROR_UPSTREAM_REGISTRY_GITLAB_COM_PASSWORD", "gitlab-secret")
	k, err := New(Config{Static: map[string]Static{"quay.io": {Username: "quaybot", Password: "quay-secret"}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"registry-gitlab.com", "registry.gitlab.com", "evil.example", "quay.io:8443", "ghcr.io"} {
		t.Run(host, func(t *testing.T) {
			auth, err := k.Lookup(context.Background(), host)
			if err != nil {
				t.Fatal(err)
			}
			if auth != authn.Anonymous {
				t.Fatalf("Lookup(%s) = %v, want anonymous: nobody configured this host", host, auth)
			}
		})
	}
	// The configured host, under another spelling, still gets its own.
	auth, err := k.Lookup(context.Background(), "Quay.IO.:443")
	if c, ok := auth.(*Credential); err != nil || !ok || c.Username() != "quaybot" {
		t.Fatalf("Lookup(Quay.IO.:443) = %v, %v; want quaybot", auth, err)
	}
}

// Two configured hosts whose environment variable names collide cannot
// take credentials from the environment: the daemon refuses to start
// rather than guess which registry the password was meant for.
func TestSharedEnvNamesRefused(t *testing.T) {
	t.Parallel()
	lookalikes := []string{"registry.gitlab.com", "registry-gitlab.com"}
	tests := []struct {
		name    string
		cfg     Config
		env     map[string]string
		wantErr string
	}{
		{"shared name set", Config{Hosts: lookalikes},
			map[string]string{"REGMIRROR_UPSTREAM_REGISTRY_GITLAB_COM_PASSWORD": "p"}, "registry-gitlab.com, registry.gitlab.com"},
		{"one static, one from env", Config{Hosts: lookalikes[1:], Static: map[string]Static{lookalikes[0]: {Username: "u", Password: "p"}}},
			map[string]string{"REGMIRROR_UPSTREAM_REGISTRY_GITLAB_COM_USERNAME": "u"}, "REGMIRROR_UPSTREAM_REGISTRY_GITLAB_COM_USERNAME"},
		{"shared name unset", Config{Hosts: lookalikes}, nil, ""},
		{"distinct names", Config{Hosts: []string{"registry.gitlab.com", "ghcr.io"}},
			map[string]string{"REGMIRROR_UPSTREAM_REGISTRY_GITLAB_COM_PASSWORD": "p"}, ""},
		{"aliases are one host", Config{Hosts: []string{"docker.io", "registry-1.docker.io:443"}},
			map[string]string{"REGMIRROR_UPSTREAM_DOCKER_IO_PASSWORD": "p"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := newKeychain(tt.cfg, func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok })
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("newKeychain: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("newKeychain error %v, want one mentioning %q", err, tt.wantErr)
			}
		})
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		static map[string]Static
	}{
		{"no username", map[string]Static{"a.io": {Password: "p"}}},
		{"no password", map[string]Static{"a.io": {Username: "u"}}},
		{"password and file", map[string]Static{"a.io": {Username: "u", Password: "p", PasswordFile: "/f"}}},
		{"missing file", map[string]Static{"a.io": {Username: "u", PasswordFile: "/does/not/exist"}}},
		{"two names for Hub", map[string]Static{
			"docker.io":       {Username: "u", Password: "p"},
			"index.docker.io": {Username: "u", Password: "p"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := New(Config{Static: tt.static}); err == nil {
				t.Error("New accepted an invalid config")
			}
		})
	}
}

func TestCredentialRedactsSecrets(t *testing.T) {
	t.Parallel()
	c := &Credential{host: "docker.io", source: SourceStatic, auth: authn.AuthConfig{
		Username: "alice", Password: "hunter2", IdentityToken: "idtok", RegistryToken: "regtok",
	}}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("upstream", "cred", c)
	asJSON, _ := json.Marshal(struct{ C *Credential }{c})

	outputs := map[string]string{
		"String": c.String(),
		"%v":     fmt.Sprintf("%v", c),
		"%+v":    fmt.Sprintf("%+v", c),
		"%#v":    fmt.Sprintf("%#v", c),
		"%s":     fmt.Sprintf("%s", c),
		"value":  fmt.Sprintf("%+v", *c),
		"slog":   logged.String(),
		"json":   string(asJSON),
		"error":  fmt.Errorf("using %v: %w", c, os.ErrPermission).Error(),
	}
	for how, out := range outputs {
		for _, secret := range []string{"hunter2", "idtok", "regtok"} {
			if strings.Contains(out, secret) {
				t.Errorf("%s output leaks %q: %s", how, secret, out)
			}
		}
		if !strings.Contains(out, "alice") {
			t.Errorf("%s output should name the user: %s", how, out)
		}
	}
	if cfg, _ := c.Authorization(); cfg.Password != "hunter2" {
		t.Error("Authorization must return the secret")
	}
}
