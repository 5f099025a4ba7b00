package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/internal/testnet"
)

// A reload (SIGHUP) while a blob streams from the old upstream: the blob
// arrives whole, new pulls use the new upstream and credentials, a config
// that does not validate changes nothing, and settings that need a restart
// are reported.
func TestReloadSwapsUpstreamsWithoutDroppingTransfers(t *testing.T) {
	t.Parallel()
	oldHub, cfg := startHub(t)
	cfg.ListedUpstreamsOnly = true
	oldImg, err := oldHub.PushImage("library/node", "10", registrytest.ImageOptions{Layers: 1, LayerSize: 512 << 10, Seed: 30})
	if err != nil {
		t.Fatal(err)
	}
	layer := oldImg.Layers[0]
	stall := oldHub.InjectFault(layer.Digest, registrytest.Fault{Kind: registrytest.Stall, Times: 1})
	t.Cleanup(stall.Release) // a failing test must not leave the download hanging

	// The next configuration: the upstream moved and its password rotated.
	const newUser, newPassword = "rotated-bot", "rotated-password-91c2"
	newHub := registrytest.New(t, registrytest.Options{Username: newUser, Password: newPassword, Private: []string{"library/*"}})
	newImg, err := newHub.PushImage("library/node", "10", registrytest.ImageOptions{Layers: 1, Seed: 31})
	if err != nil {
		t.Fatal(err)
	}
	passwordFile := t.TempDir() + "/hub-password"
	if err := os.WriteFile(passwordFile, []byte(newPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	next := cfg
	next.Upstreams = []UpstreamConfig{{Host: "docker.io", URL: newHub.URL(), Username: newUser, PasswordFile: passwordFile,
		Expose: []string{"library/*"}}}
	next.MetricsListen = "127.0.0.1:1" // not reloadable: reported, not applied

	loads := make(chan func() (Config, error), 1)
	requests := make(chan os.Signal)
	applied := make(chan error)
	var logs logBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	c := newClient(t, startDaemonReloading(t, cfg, log, reloadSource{
		load:     func() (Config, error) { return (<-loads)() },
		requests: requests,
		applied:  func(err error) { applied <- err },
	}))
	hup := func(load func() (Config, error)) error {
		loads <- load
		requests <- syscall.SIGHUP
		return <-applied
	}

	type result struct {
		body []byte
		err  error
	}
	inFlight := make(chan result, 1)
	go func() {
		// A client of its own: c's one connection serves the other requests.
		resp, err := http.Get(c.base + "/v2/library/node/blobs/" + layer.Digest.String())
		if err != nil {
			inFlight <- result{err: err}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		inFlight <- result{body: body, err: err}
	}()
	<-stall.Hit()

	if err := hup(func() (Config, error) { return next.withDefaults(), nil }); err != nil {
		t.Fatalf("reload: %v", err)
	}
	oldRequests := len(oldHub.Requests())
	status, body := c.do(http.MethodGet, "/v2/library/node/manifests/10")
	if status != http.StatusOK || string(body) != string(newImg.ManifestBytes) {
		t.Fatalf("after the reload GET node:10 = %d; want the new upstream's manifest", status)
	}
	if n := len(oldHub.Requests()) - oldRequests; n != 0 {
		t.Errorf("the old upstream got %d requests after the reload", n)
	}
	if !strings.Contains(logs.String(), "after a restart") || !strings.Contains(logs.String(), "metrics_listen") {
		t.Errorf("the log does not say that metrics_listen needs a restart:\n%s", logs.String())
	}

	broken := errors.New("parsing config: line 3: bad indentation")
	if err := hup(func() (Config, error) { return Config{}, broken }); !errors.Is(err, broken) {
		t.Fatalf("reload of a broken config = %v, want %v", err, broken)
	}
	if status, _ := c.do(http.MethodGet, "/v2/library/node/blobs/"+newImg.Layers[0].Digest.String()); status != http.StatusOK {
		t.Fatalf("after a failed reload, a pull from the running upstream = %d", status)
	}

	stall.Release()
	res := <-inFlight
	if res.err != nil || int64(len(res.body)) != layer.Size || digestOf(res.body) != layer.Digest.String() {
		t.Fatalf("the blob in flight across the reload: %d bytes, %v; want all %d", len(res.body), res.err, layer.Size)
	}
	if strings.Contains(logs.String(), newPassword) || strings.Contains(logs.String(), hubPassword) {
		t.Error("a password reached the log")
	}
}

// A real daemon process and a real SIGHUP: a config file that does not
// validate is refused with every problem at its line, and the running
// configuration keeps serving; the file fixed, the next SIGHUP applies it.
func TestSIGHUPWithBrokenFileKeepsRunningConfig(t *testing.T) {
	t.Parallel()
	oldHub := registrytest.New(t, registrytest.Options{})
	newHub := registrytest.New(t, registrytest.Options{})
	for i, push := range []struct {
		hub  *registrytest.Registry
		repo string
	}{{oldHub, "library/alpine"}, {oldHub, "library/busybox"}, {newHub, "library/redis"}} {
		if _, err := push.hub.PushImage(push.repo, "1", registrytest.ImageOptions{Layers: 1, Seed: uint64(40 + i)}); err != nil {
			t.Fatal(err)
		}
	}
	addr := testnet.FreeAddr(t)
	dataDir := t.TempDir()
	config := filepath.Join(t.TempDir(), "config.yaml")
	writeFile := func(yaml string) {
		t.Helper()
		if err := os.WriteFile(config, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	good := func(url string) string {
		return fmt.Sprintf("listen: %s\ndata_dir: %s\nupstreams:\n  - host: docker.io\n    url: %s\n", addr, dataDir, url)
	}
	writeFile(good(oldHub.URL()))

	daemon := exec.Command(os.Args[0], "-test.run=^TestDaemonChild$", "-test.count=1")
	daemon.Env = append(os.Environ(), envDaemonConfig+"="+config)
	stderr, err := daemon.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { daemon.Process.Kill(); daemon.Wait() })
	logs := make(chan string, 1024)
	go func() {
		defer close(logs)
		for s := bufio.NewScanner(stderr); s.Scan(); {
			logs <- s.Text()
		}
	}()
	// waitLog returns the first log line containing text.
	waitLog := func(text string) string {
		t.Helper()
		timeout := time.After(time.Minute) // bounds a hang; the line comes at once
		for {
			select {
			case line, ok := <-logs:
				if !ok {
					t.Fatalf("the daemon exited before logging %q", text)
				}
				if strings.Contains(line, text) {
					return line
				}
			case <-timeout:
				t.Fatalf("the daemon never logged %q", text)
			}
		}
	}
	pull := func(repo string) int {
		t.Helper()
		resp, err := http.Get("http://" + addr + "/v2/" + repo + "/manifests/1")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	hup := func() {
		t.Helper()
		if err := daemon.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}

	waitLog("regmirror listening")
	if status := pull("library/alpine"); status != http.StatusOK {
		t.Fatalf("pull before any reload = %d", status)
	}

	writeFile(good(newHub.URL()) + "    tag_ttl: soon\n    retries: -1\nlisten_twice: true\n")
	hup()
	refused := waitLog("configuration not reloaded")
	for _, want := range []string{config + ":6:", config + ":7:", config + ":8:"} {
		if !strings.Contains(refused, want) {
			t.Errorf("the refusal does not name %s:\n%s", want, refused)
		}
	}
	// Still the old upstream, for a tag not cached yet.
	if status := pull("library/busybox"); status != http.StatusOK {
		t.Fatalf("after a refused reload, a pull from the running upstream = %d", status)
	}

	writeFile(good(newHub.URL()))
	hup()
	waitLog("configuration reloaded")
	if status := pull("library/redis"); status != http.StatusOK {
		t.Fatalf("after the fixed file was reloaded, a pull from the new upstream = %d", status)
	}
}
