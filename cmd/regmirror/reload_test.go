package main

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/regmirror/regmirror/internal/registrytest"
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
