package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/internal/registrytest"
)

// At debug level, through successful pulls and upstream failures, neither
// the configured upstream password nor any token the upstream issued
// reaches the log, in either format.
func TestLogsNeverContainSecrets(t *testing.T) {
	t.Parallel()
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			hub, cfg := startHub(t)
			img, err := hub.PushImage("library/node", "10", registrytest.ImageOptions{Layers: 1, Seed: 2})
			if err != nil {
				t.Fatal(err)
			}
			var logs logBuffer
			log, err := newLogger(&logs, "debug", format)
			if err != nil {
				t.Fatal(err)
			}
			c := newClient(t, startDaemonLogging(t, cfg, log))

			c.pullImage("library/node", "10", img)
			// An upstream 404, then 500s that are retried and logged.
			c.do(http.MethodGet, "/v2/library/absent/manifests/1")
			hub.FailNext(registrytest.KindManifest, 5, http.StatusInternalServerError)
			c.do(http.MethodGet, "/v2/library/node/manifests/sha256:"+strings.Repeat("0", 64))
			// Revoking makes the upstream refuse the mirror's cached token
			// and issue a new one.
			issuedBefore := hub.IssuedTokens()
			hub.RevokeTokens()
			c.do(http.MethodGet, "/v2/library/node/manifests/sha256:"+strings.Repeat("1", 64))

			issuedAfter := hub.IssuedTokens()
			if len(issuedBefore) == 0 || len(issuedAfter) == 0 {
				t.Fatalf("the upstream issued %d tokens, then %d after revoking: the test proves nothing", len(issuedBefore), len(issuedAfter))
			}
			secrets := map[string]string{
				"password":             hubPassword,
				"basic auth":           base64.StdEncoding.EncodeToString([]byte(hubUser + ":" + hubPassword)),
				"basic auth, url-safe": base64.URLEncoding.EncodeToString([]byte(hubUser + ":" + hubPassword)),
			}
			for i, tok := range append(issuedBefore, issuedAfter...) {
				secrets[fmt.Sprintf("token #%d", i)] = tok
			}
			out := logs.String()
			for what, secret := range secrets {
				if strings.Contains(out, secret) {
					t.Errorf("the %s appears in the %s log", what, format)
				}
			}
		})
	}
}

// Every registry request gets exactly one access line carrying the fields
// operators filter on.
func TestAccessLogOneJSONLinePerRequest(t *testing.T) {
	t.Parallel()
	hub, cfg := startHub(t)
	img, err := hub.PushImage("library/node", "10", registrytest.ImageOptions{Layers: 1, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	var logs logBuffer
	log, err := newLogger(&logs, "info", "json")
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, startDaemonLogging(t, cfg, log))
	c.pullImage("library/node", "10", img)
	c.do(http.MethodGet, "/healthz") // not a registry request: no access line
	c.scrape()                       // ditto

	var lines []map[string]any
	scanner := bufio.NewScanner(strings.NewReader(logs.String()))
	for scanner.Scan() {
		var line map[string]any
		if err := json.Unmarshal(scanner.Bytes(), &line); err != nil {
			t.Fatalf("log line is not JSON: %q", scanner.Text())
		}
		if line["msg"] == "request" {
			lines = append(lines, line)
		}
	}
	wantRequests := 2 + len(img.Blobs()) // tag HEAD, manifest GET, blobs
	if len(lines) != wantRequests {
		t.Fatalf("%d access lines, want %d (one per registry request)", len(lines), wantRequests)
	}
	blob := lines[len(lines)-1]
	want := map[string]any{
		"method":   "GET",
		"path":     "/v2/library/node/blobs/" + img.Layers[0].Digest.String(),
		"status":   float64(http.StatusOK),
		"bytes":    float64(img.Layers[0].Size),
		"upstream": "docker.io",
		"cache":    "miss",
	}
	for field, value := range want {
		if blob[field] != value {
			t.Errorf("access line field %s = %v, want %v (line %v)", field, blob[field], value, blob)
		}
	}
	for _, field := range []string{"duration", "client"} {
		if _, ok := blob[field]; !ok {
			t.Errorf("access line has no %s: %v", field, blob)
		}
	}
	// Seconds, not nanoseconds: a loopback pull takes well under a minute.
	if d, ok := blob["duration"].(float64); !ok || d <= 0 || d >= 60 {
		t.Errorf("access line duration %v, want seconds as a number", blob["duration"])
	}
}

// JSON logs write durations as seconds in a float; text logs keep Go's
// readable form.
func TestLogDurations(t *testing.T) {
	t.Parallel()
	tests := []struct {
		format string
		want   string
	}{
		{"json", `"took":1.5,"grace":{"max":0.00025}`},
		{"text", `took=1.5s grace.max=250µs`},
	}
	for _, tt := range tests {
		var out strings.Builder
		log, err := newLogger(&out, "info", tt.format)
		if err != nil {
			t.Fatal(err)
		}
		log.Info("x", "took", 1500*time.Millisecond, slog.Group("grace", "max", 250*time.Microsecond))
		if !strings.Contains(out.String(), tt.want) {
			t.Errorf("%s log %q, want %s", tt.format, out.String(), tt.want)
		}
	}
}
