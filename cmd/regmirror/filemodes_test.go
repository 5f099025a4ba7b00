package main

import (
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/random"
	"golang.org/x/crypto/bcrypt"

	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/mirror"
)

// writeSecret writes a file with exactly mode, whatever the umask.
func writeSecret(t *testing.T, path, content string, mode fs.FileMode) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// After a pull and a push, nothing under the data directory (blobs, the
// index, upload sessions, temp files) is open to group or others, even in
// a data directory an earlier version left world-readable.
func TestDataDirIsPrivateToTheDaemon(t *testing.T) {
	t.Parallel()
	hub := registrytest.New(t, registrytest.Options{})
	img, err := hub.PushImage("library/node", "1", registrytest.ImageOptions{Layers: 2, LayerSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), mirror.MinBcryptCost)
	if err != nil {
		t.Fatal(err)
	}
	secrets := t.TempDir()
	htpasswd := writeSecret(t, filepath.Join(secrets, "htpasswd"), "ci:"+string(hash)+"\n", 0o600)
	dataDir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dataDir, 0o755); err != nil { // as an earlier version made it
		t.Fatal(err)
	}
	cfg := Config{DataDir: dataDir, Upstreams: []UpstreamConfig{{Host: "docker.io", URL: hub.URL()}},
		Hosted: HostedConfig{Htpasswd: htpasswd, Repositories: []string{"team/*"}}}.withDefaults()
	base, stop := startDaemon(t, cfg, io.Discard)
	waitFor(t, base+"/healthz")

	pullImage(t, base, "library/node", "1")
	app, err := random.Image(4096, 2)
	if err != nil {
		t.Fatal(err)
	}
	pushTo(t, mustRef(t, strings.TrimPrefix(base, "http://")+"/team/app:1"), app)
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	var files int
	err = filepath.WalkDir(dataDir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		files++
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			rel, _ := filepath.Rel(dataDir, path)
			t.Errorf("%s has mode %04o: group or others may use it", rel, perm)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < len(img.Blobs())+2 {
		t.Fatalf("only %d entries in the data directory: the pull and push stored nothing", files)
	}
}

// A secret file that group or others may read gets one warning at startup,
// naming the file and never its contents; a private one gets none.
func TestStartupWarnsAboutReadableSecretFiles(t *testing.T) {
	t.Parallel()
	const password = "upstream-secret-3c9d"
	tests := []struct {
		name       string
		configMode fs.FileMode
		wantWarn   bool
	}{
		{name: "config readable by others", configMode: 0o644, wantWarn: true},
		{name: "config readable by group", configMode: 0o640, wantWarn: true},
		{name: "private config", configMode: 0o600, wantWarn: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := writeSecret(t, filepath.Join(dir, "regmirror.yaml"),
				"upstreams:\n  - host: docker.io\n    url: http://127.0.0.1:1\n    username: bot\n    password: "+password+"\n",
				tt.configMode)
			cfg, err := loadConfig(path)
			if err != nil {
				t.Fatal(err)
			}
			cfg.DataDir = filepath.Join(dir, "data")
			var logs logBuffer
			base, stop := startDaemon(t, cfg.withDefaults(), &logs)
			waitFor(t, base+"/healthz")
			if err := stop(); err != nil {
				t.Fatal(err)
			}

			var warnings []string
			for _, line := range strings.Split(logs.String(), "\n") {
				if strings.Contains(line, "level=WARN") && strings.Contains(line, path) {
					warnings = append(warnings, line)
				}
			}
			if got := len(warnings) == 1; got != tt.wantWarn {
				t.Fatalf("warnings naming %s: %q, want one: %v", path, warnings, tt.wantWarn)
			}
			if strings.Contains(logs.String(), password) {
				t.Fatal("the log shows the config file's password")
			}
		})
	}
}
