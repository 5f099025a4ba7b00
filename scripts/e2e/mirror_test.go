//go:build e2e

package e2e_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/scripts/e2e"
)

// Credentials of the in-process Docker Hub: library/* needs them, so a
// pull that succeeds proves the mirror injected them.
const (
	hubUser     = "mirror-bot"
	hubPassword = "e2e-hub-password"
)

// TestDockerPullThroughRegmirror is the end-to-end promise: a dockerd whose
// only configuration is daemon.json.example pulls node:10 through regmirror
// from an upstream that needs credentials; after `docker rmi` the second
// pull is served entirely from the cache, even with the upstream gone.
func TestDockerPullThroughRegmirror(t *testing.T) {
	hub := registrytest.New(t, registrytest.Options{Username: hubUser, Password: hubPassword, Private: []string{"library/*"}})
	ix, err := hub.PushIndex("library/node", "10", registrytest.ImageOptions{Layers: 3, LayerSize: 2 << 20, Seed: 10})
	if err != nil {
		t.Fatal(err)
	}
	hub.Reset()

	mirrorURL := startRegmirror(t, upstreamSpec{host: "docker.io", url: hub.URL(), user: hubUser, password: hubPassword})
	d := e2e.StartDockerd(t, mirrorURL)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()

	pull(ctx, t, d, "node:10")
	amd64 := ix.Images[0]
	if id := inspect(ctx, t, d, "node:10", "{{.Id}}"); id != amd64.Config.Digest.String() {
		t.Fatalf("image ID = %s, want the linux/amd64 config digest %s", id, amd64.Config.Digest)
	}
	for _, b := range amd64.Blobs() {
		if n := hub.BlobGets(b.Digest); n != 1 {
			t.Errorf("cold pull: %d upstream GETs of %s, want 1", n, b.Digest)
		}
	}
	for _, b := range ix.Images[1].Blobs() {
		if n := hub.BlobGets(b.Digest); n != 0 {
			t.Errorf("cold pull fetched arm64 blob %s %d times", b.Digest, n)
		}
	}

	if out, err := d.Docker(ctx, "rmi", "node:10"); err != nil {
		t.Fatalf("docker rmi: %v\n%s", err, out)
	}
	hub.Reset()
	pull(ctx, t, d, "node:10")
	if n := hub.BlobGetsTotal(); n != 0 {
		t.Fatalf("warm pull made %d upstream blob requests, want 0", n)
	}
	if reqs := hub.Requests(); len(reqs) != 0 {
		t.Fatalf("warm pull within the tag TTL made %d upstream requests, want 0: %+v", len(reqs), reqs)
	}

	// The upstream goes away: the cached image still pulls.
	if out, err := d.Docker(ctx, "rmi", "node:10"); err != nil {
		t.Fatalf("docker rmi: %v\n%s", err, out)
	}
	hub.Close()
	pull(ctx, t, d, "node:10")
	if id := inspect(ctx, t, d, "node:10", "{{.Id}}"); id != amd64.Config.Digest.String() {
		t.Fatalf("image ID after pulling with the upstream down = %s, want %s", id, amd64.Config.Digest)
	}
}

func pull(ctx context.Context, t *testing.T, d *e2e.Dockerd, image string) {
	t.Helper()
	start := time.Now()
	if out, err := d.Docker(ctx, "pull", image); err != nil {
		t.Fatalf("docker pull %s: %v\n%s", image, err, out)
	}
	t.Logf("docker pull %s took %v", image, time.Since(start).Round(time.Millisecond))
}

// upstreamSpec is one upstream of the regmirror under test.
type upstreamSpec struct {
	host, url, user, password string
}

// startRegmirror runs the daemon binary under test with the upstreams and
// their credentials in its config file and returns its URL once it answers.
func startRegmirror(t *testing.T, ups ...upstreamSpec) string {
	t.Helper()
	bin := os.Getenv("REGMIRROR_BIN")
	if bin == "" {
		t.Fatal("REGMIRROR_BIN must name the regmirror binary under test (scripts/e2e.sh sets it)")
	}
	dir := t.TempDir()
	config := filepath.Join(dir, "config.yaml")
	yaml := "upstreams:\n"
	for _, u := range ups {
		passwordFile := filepath.Join(dir, u.host+"-password")
		if err := os.WriteFile(passwordFile, []byte(u.password+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		// The fixtures' private repositories reach dockerd only because
		// the operator exposes them (upstreams[].expose).
		yaml += fmt.Sprintf("  - host: %s\n    url: %s\n    username: %s\n    password_file: %s\n    expose: [\"library/*\", \"org/*\"]\n",
			u.host, u.url, u.user, passwordFile)
	}
	if err := os.WriteFile(config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeLoopbackAddr(t)
	logPath := filepath.Join(dir, "regmirror.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--listen", addr, "--data-dir", filepath.Join(dir, "data"), "--config", config)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+dir) // no ambient docker credentials
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		logFile.Close()
		if t.Failed() {
			if log, err := os.ReadFile(logPath); err == nil {
				t.Logf("regmirror log:\n%s", log)
			}
		}
		if log, err := os.ReadFile(logPath); err == nil {
			for _, u := range ups {
				if strings.Contains(string(log), u.password) {
					t.Errorf("the %s password appears in regmirror's log", u.host)
				}
			}
		}
	})
	url := "http://" + addr
	waitReady(t, url+"/v2/")
	return url
}

func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitReady(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("regmirror did not answer %s within 30s", url)
}
