//go:build e2e

package e2e_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/scripts/e2e"
)

// The mirror's own user, who pushes.
const (
	pushUser     = "ci-bot"
	pushPassword = "e2e-push-password"
)

// TestDockerPushAndPullThroughOneURL is the hosted repository's promise:
// `docker login` and `docker push 127.0.0.1:PORT/team/app:1` to regmirror,
// then a fresh dockerd configured only with registry-mirrors pulls both
// team/app:1 (hosted) and node:10 (proxied from Docker Hub) through that
// same URL.
func TestDockerPushAndPullThroughOneURL(t *testing.T) {
	hub := registrytest.New(t, registrytest.Options{Username: hubUser, Password: hubPassword, Private: []string{"library/*"}})
	ix, err := hub.PushIndex("library/node", "10", registrytest.ImageOptions{Layers: 2, LayerSize: 256 << 10, Seed: 10})
	if err != nil {
		t.Fatal(err)
	}
	mirrorURL := startHostedRegmirror(t, hub.URL())
	mirrorHost := strings.TrimPrefix(mirrorURL, "http://")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()

	pusher := e2e.StartDockerd(t, mirrorURL)
	image := mirrorHost + "/team/app:1"
	if out, err := pusher.DockerInput(ctx, bytes.NewReader(tinyRootfs(t)), "import", "-", image); err != nil {
		t.Fatalf("docker import: %v\n%s", err, out)
	}
	if out, err := pusher.Docker(ctx, "push", image); err == nil || !strings.Contains(err.Error()+out, "unauthorized") {
		t.Fatalf("docker push before docker login: err %v, want unauthorized\n%s", err, out)
	}
	if out, err := pusher.DockerInput(ctx, strings.NewReader(pushPassword+"\n"),
		"login", mirrorHost, "--username", pushUser, "--password-stdin"); err != nil {
		t.Fatalf("docker login: %v\n%s", err, out)
	}
	if out, err := pusher.Docker(ctx, "push", image); err != nil {
		t.Fatalf("docker push: %v\n%s", err, out)
	}
	pushedID := inspect(ctx, t, pusher, image, "{{.Id}}")

	puller := e2e.StartDockerd(t, mirrorURL)
	pull(ctx, t, puller, "team/app:1")
	if id := inspect(ctx, t, puller, "team/app:1", "{{.Id}}"); id != pushedID {
		t.Fatalf("pulled team/app:1 has image ID %s, want the pushed %s", id, pushedID)
	}
	pull(ctx, t, puller, "node:10")
	if id := inspect(ctx, t, puller, "node:10", "{{.Id}}"); id != ix.Images[0].Config.Digest.String() {
		t.Fatalf("node:10 has image ID %s, want the linux/amd64 config digest %s", id, ix.Images[0].Config.Digest)
	}
}

// tinyRootfs is a root filesystem of one file, as a tar for docker import:
// an image made without any network.
func tinyRootfs(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	content := []byte(fmt.Sprintf("pushed by %s at %s\n", t.Name(), time.Now().Format(time.RFC3339Nano)))
	if err := tw.WriteHeader(&tar.Header{Name: "hello.txt", Mode: 0o644, Size: int64(len(content)), ModTime: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(content); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// startHostedRegmirror runs the daemon under test with Docker Hub at
// upstreamURL and hosted repositories that pushUser may push to, and
// returns its URL once it answers.
func startHostedRegmirror(t *testing.T, upstreamURL string) string {
	t.Helper()
	dir := t.TempDir()
	hash, err := bcrypt.GenerateFromPassword([]byte(pushPassword), bcrypt.DefaultCost) // the daemon refuses cheaper hashes
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"htpasswd":     pushUser + ":" + string(hash) + "\n",
		"hub-password": hubPassword + "\n",
	}
	files["config.yaml"] = fmt.Sprintf(`upstreams:
  - host: docker.io
    url: %s
    username: %s
    password_file: %s
    expose: ["library/*"]
hosted:
  htpasswd: %s
  repositories: ["team/*"]
`, upstreamURL, hubUser, filepath.Join(dir, "hub-password"), filepath.Join(dir, "htpasswd"))
	writeFiles(t, dir, files)
	url, _ := runRegmirror(t, dir, pushPassword, hubPassword)
	return url
}

// writeFiles writes each file, by name, into dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// runRegmirror runs the daemon under test with dir/config.yaml and its data
// in dir, and returns its URL once it answers and the path of its log. When
// the test ends it checks that none of secrets reached the log.
func runRegmirror(t *testing.T, dir string, secrets ...string) (url, logPath string) {
	t.Helper()
	bin := os.Getenv("REGMIRROR_BIN")
	if bin == "" {
		t.Fatal("REGMIRROR_BIN must name the regmirror binary under test (scripts/e2e.sh sets it)")
	}
	addr := freeLoopbackAddr(t)
	logPath = filepath.Join(dir, "regmirror.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--listen", addr, "--data-dir", filepath.Join(dir, "data"),
		"--config", filepath.Join(dir, "config.yaml"))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		logFile.Close()
		log, _ := os.ReadFile(logPath)
		if t.Failed() {
			t.Logf("regmirror log:\n%s", log)
		}
		for _, secret := range secrets {
			if strings.Contains(string(log), secret) {
				t.Errorf("a password appears in regmirror's log")
			}
		}
	})
	url = "http://" + addr
	waitReady(t, url+"/healthz") // the ping challenges: hosted repositories take logins
	return url, logPath
}
