package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/regmirror/regmirror/internal/registrytest"
)

// Fixture credentials of the upstream that stands in for Docker Hub.
const (
	hubUser     = "mirror-bot"
	hubPassword = "hub-secret-password-7f3a"
)

// startHub runs a Docker-Hub-like upstream whose library/* repositories
// need the fixture credentials, and a daemon configured with them.
func startHub(t *testing.T) (*registrytest.Registry, Config) {
	t.Helper()
	hub := registrytest.New(t, registrytest.Options{Username: hubUser, Password: hubPassword, Private: []string{"library/*"}})
	cfg := Config{DataDir: t.TempDir(), Upstreams: []UpstreamConfig{{
		Host: "docker.io", URL: hub.URL(), Username: hubUser, Password: hubPassword,
		Expose: []string{"library/*"}, // private upstream, passed on by the operator's choice
	}}}
	return hub, cfg
}

// startDaemonLogging is startDaemon with the logger the test chooses.
func startDaemonLogging(t testing.TB, cfg Config, log *slog.Logger) string {
	t.Helper()
	return startDaemonReloading(t, cfg, log, reloadSource{})
}

// startDaemonReloading runs a daemon that reloads its configuration from src.
func startDaemonReloading(t testing.TB, cfg Config, log *slog.Logger, src reloadSource) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveReloading(ctx, ln, cfg.withDefaults(), log, src) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serveOn: %v", err)
			}
		case <-time.After(time.Minute):
			t.Error("daemon did not stop within a minute")
		}
	})
	return "http://" + ln.Addr().String()
}

// client talks to the daemon over one kept-alive connection. The server
// reads a connection's next request only after the previous handler has
// returned, so whatever a request counts in the daemon's metrics (after
// its last byte has gone out) is counted before the next request is
// answered: scrapes see exact numbers without waiting.
type client struct {
	t    *testing.T
	base string
	http *http.Client
}

func newClient(t *testing.T, base string) *client {
	return &client{t: t, base: base, http: &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}}
}

// get sends method to path and returns the status and the whole body.
func (c *client) do(method, path string) (int, []byte) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	return resp.StatusCode, body
}

// pullImage pulls repo:tag the way dockerd does: tag HEAD, manifest by
// digest, then every blob. It returns the blob bytes received.
func (c *client) pullImage(repo, tag string, img registrytest.Image) int64 {
	c.t.Helper()
	if status, _ := c.do(http.MethodHead, "/v2/"+repo+"/manifests/"+tag); status != http.StatusOK {
		c.t.Fatalf("HEAD %s:%s = %d", repo, tag, status)
	}
	if status, body := c.do(http.MethodGet, "/v2/"+repo+"/manifests/"+img.Manifest.Digest.String()); status != http.StatusOK || string(body) != string(img.ManifestBytes) {
		c.t.Fatalf("GET manifest of %s:%s = %d", repo, tag, status)
	}
	var total int64
	for _, b := range img.Blobs() {
		status, body := c.do(http.MethodGet, "/v2/"+repo+"/blobs/"+b.Digest.String())
		if status != http.StatusOK || int64(len(body)) != b.Size {
			c.t.Fatalf("GET blob %s = %d with %d bytes, want %d", b.Digest, status, len(body), b.Size)
		}
		total += b.Size
	}
	return total
}

// metricValues are the samples of one scrape, keyed by name and labels as
// Prometheus writes them: `name{a="x",b="y"}`, labels sorted.
type metricValues map[string]float64

// scrape reads /metrics in the text exposition format.
func (c *client) scrape() metricValues {
	c.t.Helper()
	status, body := c.do(http.MethodGet, "/metrics")
	if status != http.StatusOK {
		c.t.Fatalf("GET /metrics = %d", status)
	}
	values, err := parseMetrics(string(body))
	if err != nil {
		c.t.Fatal(err)
	}
	return values
}

func parseMetrics(text string) (metricValues, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		return nil, fmt.Errorf("parsing /metrics: %w", err)
	}
	values := metricValues{}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			var pairs []string
			for _, l := range m.GetLabel() {
				pairs = append(pairs, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			slices.Sort(pairs)
			key := name
			if len(pairs) > 0 {
				key += "{" + strings.Join(pairs, ",") + "}"
			}
			switch {
			case m.Counter != nil:
				values[key] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				values[key] = m.GetGauge().GetValue()
			case m.Histogram != nil:
				values[key+"#count"] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return values, nil
}

// logBuffer collects a daemon's log output safely across goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// digestOf is the sha256 digest of data, as a string.
func digestOf(data []byte) string {
	return digest.FromBytes(data).String()
}
