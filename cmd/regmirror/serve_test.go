package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/internal/registrytest"
)

// TestMain hides the machine's docker credentials from the tests.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "regmirror-docker-config")
	if err != nil {
		panic(err)
	}
	os.Setenv("DOCKER_CONFIG", dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// startDaemon runs serveOn on a loopback port and returns its URL and a
// function that stops it and returns serveOn's result.
func startDaemon(t *testing.T, cfg Config, logs io.Writer) (string, func() error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return startDaemonOn(t, ln, cfg, logs)
}

// startDaemonOn is startDaemon on ln, for a config that names the
// daemon's own address.
func startDaemonOn(t *testing.T, ln net.Listener, cfg Config, logs io.Writer) (string, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	go func() { done <- serveOn(ctx, ln, cfg, log) }()
	stop := sync.OnceValue(func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(time.Minute):
			return errors.New("daemon did not stop within a minute")
		}
	})
	t.Cleanup(func() { _ = stop() })
	return "http://" + ln.Addr().String(), stop
}

func TestServePullsAndShutsDown(t *testing.T) {
	t.Parallel()
	hub := registrytest.New(t, registrytest.Options{Username: "bot", Password: "hub-secret-password", Private: []string{"library/*"}})
	img, err := hub.PushImage("library/node", "10", registrytest.ImageOptions{Layers: 1, LayerSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{DataDir: t.TempDir(), Upstreams: []UpstreamConfig{{Host: "docker.io", URL: hub.URL(), Username: "bot", Password: "hub-secret-password",
		Expose: []string{"library/*"}}}}.withDefaults()
	var logs strings.Builder
	url, stop := startDaemon(t, cfg, &syncWriter{w: &logs})

	resp, err := http.Get(url + "/v2/node/blobs/" + img.Layers[0].Digest.String())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || int64(len(body)) != img.Layers[0].Size {
		t.Fatalf("GET blob = %d with %d bytes", resp.StatusCode, len(body))
	}
	for _, path := range []string{"/healthz", "/metrics"} {
		resp, err := http.Get(url + path)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s = %v, %v", path, resp, err)
		}
		resp.Body.Close()
	}
	if err := stop(); err != nil {
		t.Fatalf("serveOn returned %v after cancel, want nil", err)
	}
	if strings.Contains(logs.String(), "hub-secret-password") {
		t.Fatal("the upstream password appears in the daemon's log")
	}
}

// A second daemon on the same data directory fails at once with a clear
// error, and the first keeps serving.
func TestSecondDaemonOnSameDataDirRefused(t *testing.T) {
	t.Parallel()
	cfg := Config{DataDir: t.TempDir()}.withDefaults()
	url, _ := startDaemon(t, cfg, io.Discard)
	waitFor(t, url+"/healthz")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	err = serveOn(context.Background(), ln, cfg, slog.New(slog.DiscardHandler))
	if !errors.Is(err, cache.ErrLocked) || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second daemon: %v, want an error wrapping cache.ErrLocked that says the directory is in use", err)
	}
	resp, err := http.Get(url + "/v2/")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("first daemon after the second failed: %v, %v", resp, err)
	}
	resp.Body.Close()
}

func waitFor(t *testing.T, url string) {
	t.Helper()
	for range 200 {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s never answered", url)
}
