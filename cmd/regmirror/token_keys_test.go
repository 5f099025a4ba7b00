package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/regmirror/regmirror/mirror"
)

// writeTokenKey writes a new random key, hex as `openssl rand -hex 32`
// makes it, with its newline, to a file of dir and returns the file and
// the key.
func writeTokenKey(t *testing.T, dir, name string) (path, key string) {
	t.Helper()
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	key = hex.EncodeToString(raw)
	path = filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, key
}

// config check reads the token key files: a missing one and one too short
// are reported at their lines, naming the files and never what they hold;
// a valid configuration prints the paths and never the keys.
func TestConfigCheckReadsTheTokenKeyFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte(htpasswdLine(t, "alice", "alice-pw", mirror.MinBcryptCost)), 0o600); err != nil {
		t.Fatal(err)
	}
	const shortKey = "short-token-key-5e1f"
	short := filepath.Join(dir, "short-key")
	if err := os.WriteFile(short, []byte(shortKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing-key")
	path := writeConfig(t, fmt.Sprintf("hosted:\n  htpasswd: %s\n  repositories: [team/*]\n  token_key_file: %s\n", htpasswd, missing))
	code, stdout, stderr := runExit(t, "config", "check", "--config", path)
	if code != exitConfig {
		t.Errorf("missing key file: exit status %d, want %d", code, exitConfig)
	}
	if want := path + ":4: hosted.token_key_file: open " + missing; !strings.Contains(stderr, want) {
		t.Errorf("no %q in:\n%s", want, stderr)
	}
	if code, _, stderr := runExit(t, "config", "check", "--no-files", "--quiet", "--config", path); code != exitOK || stderr != "" {
		t.Errorf("with --no-files: exit status %d, %s", code, stderr)
	}

	current, currentKey := writeTokenKey(t, dir, "token-key")
	path = writeConfig(t, fmt.Sprintf("hosted:\n  htpasswd: %s\n  repositories: [team/*]\n  token_key_file: %s\n  previous_token_key_file: %s\n",
		htpasswd, current, short))
	code, stdout, stderr = runExit(t, "config", "check", "--config", path)
	if code != exitConfig {
		t.Errorf("short key: exit status %d, want %d", code, exitConfig)
	}
	if want := path + ":5: hosted.previous_token_key_file: " + short + " holds fewer than 32 bytes"; !strings.Contains(stderr, want) {
		t.Errorf("no %q in:\n%s", want, stderr)
	}
	if strings.Contains(stdout+stderr, shortKey) || strings.Contains(stdout+stderr, currentKey) {
		t.Errorf("a token key was printed:\n%s%s", stdout, stderr)
	}

	previous, previousKey := writeTokenKey(t, dir, "previous-token-key")
	path = writeConfig(t, fmt.Sprintf("hosted:\n  htpasswd: %s\n  repositories: [team/*]\n  token_key_file: %s\n  previous_token_key_file: %s\n",
		htpasswd, current, previous))
	code, stdout, stderr = runExit(t, "config", "check", "--config", path)
	if code != exitOK {
		t.Fatalf("valid keys: exit status %d:\n%s", code, stderr)
	}
	for _, want := range []string{"token_key_file: " + current, "previous_token_key_file: " + previous} {
		if !strings.Contains(stdout, want) {
			t.Errorf("the effective configuration lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout+stderr, currentKey) || strings.Contains(stdout+stderr, previousKey) {
		t.Errorf("a token key was printed:\n%s%s", stdout, stderr)
	}
}

// tokenDaemon is a daemon with hosted repositories whose configuration a
// test reloads.
type tokenDaemon struct {
	base   string
	logs   *logBuffer
	loads  chan Config
	hups   chan os.Signal
	result chan error
}

func startTokenDaemon(t *testing.T, cfg Config) *tokenDaemon {
	t.Helper()
	d := &tokenDaemon{logs: &logBuffer{}, loads: make(chan Config, 1), hups: make(chan os.Signal), result: make(chan error)}
	d.base = startDaemonReloading(t, cfg, slog.New(slog.NewTextHandler(d.logs, nil)), reloadSource{
		load:     func() (Config, error) { return (<-d.loads).withDefaults(), nil },
		requests: d.hups,
		applied:  func(err error) { d.result <- err },
	})
	return d
}

// reload sends SIGHUP with next as the config file's new content.
func (d *tokenDaemon) reload(next Config) error {
	d.loads <- next
	d.hups <- syscall.SIGHUP
	return <-d.result
}

// login fetches a push token for team/app as alice, as docker does after
// the ping's challenge.
func (d *tokenDaemon) login(t *testing.T) string {
	t.Helper()
	return fetchToken(t, d.base+"/v2/token?service=regmirror&scope=repository:team/app:pull,push", "alice", "alice-pw")
}

// fetchToken asks the token endpoint at tokenURL for a token with Basic
// credentials and returns it; anything but 200 with a token fails the test.
func fetchToken(t *testing.T, tokenURL, user, password string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, tokenURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(user, password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK || body.Token == "" {
		t.Fatalf("token from %s = %d, %v; want 200 with a token", tokenURL, resp.StatusCode, err)
	}
	return body.Token
}

// accepts reports whether an upload with token starts (202); a refused
// token gets 401.
func (d *tokenDaemon) accepts(t *testing.T, token string) bool {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, d.base+"/v2/team/app/blobs/uploads/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted && resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("upload with a token = %d, want 202 or 401", resp.StatusCode)
	}
	return resp.StatusCode == http.StatusAccepted
}

// Two daemons with the same hosted.token_key_file accept each other's
// tokens. SIGHUP reads the key files again and takes a
// previous_token_key_file added to the config file: B rotates to a new
// key, still accepting A's tokens of the old one, while A refuses B's new
// tokens until it rotates too. A key file that does not load is logged,
// never its content, and the running keys stay.
func TestSIGHUPReloadsTokenKeys(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte(htpasswdLine(t, "alice", "alice-pw", mirror.MinBcryptCost)), 0o600); err != nil {
		t.Fatal(err)
	}
	oldFile, oldKey := writeTokenKey(t, dir, "old-key")
	_, cfgA := startHub(t)
	cfgA.Hosted = HostedConfig{Htpasswd: htpasswd, Repositories: []string{"team/*"}, TokenKeyFile: oldFile}
	cfgB := cfgA
	cfgB.DataDir = t.TempDir()
	a, b := startTokenDaemon(t, cfgA), startTokenDaemon(t, cfgB)

	oldToken := a.login(t)
	if !b.accepts(t, oldToken) {
		t.Fatal("B refuses a token of A, with the same key")
	}

	newFile, newKey := writeTokenKey(t, dir, "new-key")
	rotated := cfgB
	rotated.Hosted.TokenKeyFile, rotated.Hosted.PreviousTokenKeyFile = newFile, oldFile
	if err := b.reload(rotated); err != nil {
		t.Fatalf("B's reload: %v", err)
	}
	if !b.accepts(t, oldToken) {
		t.Error("B, rotated, refuses a token of the old key, its previous one")
	}
	newToken := b.login(t)
	if a.accepts(t, newToken) {
		t.Fatal("A, with the old key only, accepts B's token: B did not sign with the new key")
	}
	rotatedA := cfgA
	rotatedA.Hosted.TokenKeyFile, rotatedA.Hosted.PreviousTokenKeyFile = newFile, oldFile
	if err := a.reload(rotatedA); err != nil {
		t.Fatalf("A's reload: %v", err)
	}
	if !a.accepts(t, newToken) || !a.accepts(t, oldToken) {
		t.Error("A, rotated, refuses a token of the new or the old key")
	}

	const shortKey = "too-short-key-3b9a"
	if err := os.WriteFile(newFile, []byte(shortKey), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.reload(rotatedA); err == nil || !strings.Contains(err.Error(), "fewer than 32 bytes") {
		t.Fatalf("reload with a short key: err = %v, want it refused", err)
	}
	if !strings.Contains(a.logs.String(), "token keys not reloaded") {
		t.Errorf("the refused key file is not logged:\n%s", a.logs.String())
	}
	if !a.accepts(t, newToken) {
		t.Error("after a refused reload A refuses a token of the running key")
	}
	for _, key := range []string{oldKey, newKey, shortKey} {
		if strings.Contains(a.logs.String()+b.logs.String(), key) {
			t.Errorf("a token key reached the log")
		}
	}
}
