package main

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/mirror"
)

// htpasswdLine is a user's line of an htpasswd file at bcrypt cost.
func htpasswdLine(t *testing.T, user, password string, cost int) string {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		t.Fatal(err)
	}
	return user + ":" + string(hash) + "\n"
}

// An htpasswd file with a hash cheaper than mirror.MinBcryptCost is
// refused when the daemon loads it, naming the user and the minimum.
func TestHtpasswdBelowMinimumCostIsRefused(t *testing.T) {
	t.Parallel()
	store, err := cache.Open(context.Background(), cache.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	path := filepath.Join(t.TempDir(), "htpasswd")
	content := htpasswdLine(t, "strong", "pw-1", mirror.MinBcryptCost) + htpasswdLine(t, "weak", "pw-2", mirror.MinBcryptCost-1)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err = openHosted(store, HostedConfig{Htpasswd: path}, AuthConfig{}, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "weak (cost 9)") || !strings.Contains(err.Error(), "minimum cost is 10") {
		t.Fatalf("loading an htpasswd with a cost-9 hash: err = %v, want it refused naming user weak and the minimum 10", err)
	}
}

// SIGHUP reads the htpasswd file again: a user added since logs in. A file
// that does not load (here: a hash below the minimum cost) is refused and
// logged, and the users loaded before keep working.
func TestSIGHUPReloadsHtpasswd(t *testing.T) {
	t.Parallel()
	_, cfg := startHub(t)
	path := filepath.Join(t.TempDir(), "htpasswd")
	alice := htpasswdLine(t, "alice", "alice-pw", mirror.MinBcryptCost)
	bob := htpasswdLine(t, "bob", "bob-pw", mirror.MinBcryptCost)
	if err := os.WriteFile(path, []byte(alice), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Hosted = HostedConfig{Htpasswd: path, Repositories: []string{"team/*"}}

	requests := make(chan os.Signal)
	applied := make(chan error)
	var logs logBuffer
	c := newClient(t, startDaemonReloading(t, cfg, slog.New(slog.NewTextHandler(&logs, nil)), reloadSource{
		load:     func() (Config, error) { return cfg.withDefaults(), nil },
		requests: requests,
		applied:  func(err error) { applied <- err },
	}))
	hup := func() error {
		requests <- syscall.SIGHUP
		return <-applied
	}
	login := func(user, password string) int {
		req, err := http.NewRequest(http.MethodGet, c.base+"/v2/token?account="+user+"&offline_token=true", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.SetBasicAuth(user, password)
		resp, err := c.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	if status := login("bob", "bob-pw"); status != http.StatusUnauthorized {
		t.Fatalf("bob's login before he is added = %d, want 401", status)
	}
	if err := os.WriteFile(path, []byte(alice+bob), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := hup(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if status := login("bob", "bob-pw"); status != http.StatusOK {
		t.Fatalf("bob's login after the reload = %d, want 200", status)
	}

	carol := htpasswdLine(t, "carol", "carol-pw", bcrypt.MinCost)
	if err := os.WriteFile(path, []byte(alice+carol), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := hup(); err == nil || !strings.Contains(err.Error(), "carol") {
		t.Fatalf("reload of an htpasswd with a cheap hash: err = %v, want it refused", err)
	}
	if !strings.Contains(logs.String(), "htpasswd not reloaded") {
		t.Errorf("the refused htpasswd is not logged:\n%s", logs.String())
	}
	for _, u := range []struct{ user, password string }{{"alice", "alice-pw"}, {"bob", "bob-pw"}} {
		if status := login(u.user, u.password); status != http.StatusOK {
			t.Errorf("%s's login after a refused reload = %d, want 200 (the running users stay)", u.user, status)
		}
	}
	if status := login("carol", "carol-pw"); status != http.StatusUnauthorized {
		t.Errorf("carol's login from the refused file = %d, want 401", status)
	}
	if strings.Contains(logs.String(), "bob-pw") || strings.Contains(logs.String(), "$2a$") {
		t.Error("a password or hash reached the log")
	}
}

// In the config file a cap left out is the default, and only an explicit 0
// lifts it; negative caps are refused.
func TestHostedLimitsFromConfig(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		yaml    string
		uploads mirror.UploadLimits
		logins  mirror.LoginLimits
		invalid string
	}{
		{name: "left out: the defaults", yaml: ""},
		{
			name:    "explicit zero: no cap",
			yaml:    "max_upload_size: 0\nmax_upload_sessions: 0\nmax_storage_per_user: 0\nmax_failed_logins_per_client: 0\nmax_failed_logins_per_user: 0\n",
			uploads: mirror.UploadLimits{MaxUploadSize: -1, MaxSessions: -1, MaxStorage: -1},
			logins:  mirror.LoginLimits{MaxFailuresPerClient: -1, MaxFailuresPerUser: -1},
		},
		{
			name:    "set",
			yaml:    "max_upload_size: 1GiB\nmax_upload_sessions: 4\nmax_storage_per_user: 5GiB\nmax_failed_logins_per_client: 3\nfailed_login_window: 1h\n",
			uploads: mirror.UploadLimits{MaxUploadSize: 1 << 30, MaxSessions: 4, MaxStorage: 5 << 30},
			logins:  mirror.LoginLimits{MaxFailuresPerClient: 3, FailureWindow: time.Hour},
		},
		{name: "negative", yaml: "max_upload_sessions: -1\n", invalid: "max_upload_sessions must not be negative"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "config.yaml")
			indented := "  " + strings.ReplaceAll(strings.TrimSuffix(tc.yaml, "\n"), "\n", "\n  ")
			if err := os.WriteFile(path, []byte("hosted:\n  htpasswd: /etc/regmirror/htpasswd\n"+indented+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := loadConfig(path)
			if err != nil {
				t.Fatal(err)
			}
			err = cfg.withDefaults().validate()
			if tc.invalid != "" {
				if err == nil || !strings.Contains(err.Error(), tc.invalid) {
					t.Fatalf("validate = %v, want %q", err, tc.invalid)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Hosted.uploadLimits(); got != tc.uploads {
				t.Errorf("upload limits = %+v, want %+v", got, tc.uploads)
			}
			if got := cfg.Hosted.loginLimits(); got != tc.logins {
				t.Errorf("login limits = %+v, want %+v", got, tc.logins)
			}
		})
	}
}
