package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/internal/testnet"
)

// recorder is a client that keeps every response, headers and body, so a
// test can search all that the daemon ever answered.
type recorder struct {
	t    *testing.T
	base string
	out  bytes.Buffer
}

func (r *recorder) do(method, path string, header http.Header) int {
	r.t.Helper()
	req, err := http.NewRequest(method, r.base+path, nil)
	if err != nil {
		r.t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	fmt.Fprintf(&r.out, "%s %s -> %d\n", method, path, resp.StatusCode)
	resp.Header.Write(&r.out)
	io.Copy(&r.out, resp.Body)
	return resp.StatusCode
}

// No password, token or signed URL reaches anything the daemon writes or
// answers: its log at debug level, the bodies and headers of its answers
// (errors included), /metrics, the status page and its JSON, and the
// output of the cache commands.
func TestNoSecretInAnyOutput(t *testing.T) {
	t.Parallel()
	hub := registrytest.New(t, registrytest.Options{Username: hubUser, Password: hubPassword,
		Private: []string{"library/*", "secret/*"}, RedirectBlobs: true})
	cfg := Config{DataDir: t.TempDir(), Upstreams: []UpstreamConfig{{
		Host: "docker.io", URL: hub.URL(), Username: hubUser, Password: hubPassword, Expose: []string{"library/*"},
	}}}
	img, err := hub.PushImage("library/node", "10", registrytest.ImageOptions{Layers: 2, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hub.PushImage("secret/app", "1", registrytest.ImageOptions{Layers: 1, Seed: 8}); err != nil {
		t.Fatal(err)
	}
	var logs logBuffer
	log, err := newLogger(&logs, "debug", "json")
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{t: t, base: startDaemonLogging(t, cfg, log)}

	// Pulls, cold and warm; blobs come through the CDN's signed URLs.
	for range 2 {
		r.do(http.MethodHead, "/v2/library/node/manifests/10", nil)
		r.do(http.MethodGet, "/v2/library/node/manifests/"+img.Manifest.Digest.String(), nil)
		for _, b := range img.Blobs() {
			if status := r.do(http.MethodGet, "/v2/library/node/blobs/"+b.Digest.String(), nil); status != http.StatusOK {
				t.Fatalf("GET blob = %d", status)
			}
		}
	}
	// Errors of every kind: not found, upstream failures, a private
	// repository refused, a client sending credentials of its own.
	r.do(http.MethodGet, "/v2/library/absent/manifests/1", nil)
	hub.FailNext(registrytest.KindManifest, 5, http.StatusInternalServerError)
	r.do(http.MethodGet, "/v2/library/node/manifests/sha256:"+strings.Repeat("0", 64), nil)
	if status := r.do(http.MethodGet, "/v2/secret/app/manifests/1", nil); status != http.StatusForbidden {
		t.Fatalf("unexposed private repository = %d, want 403", status)
	}
	r.do(http.MethodGet, "/v2/library/node/manifests/10", http.Header{"Authorization": {"Basic " + basic(hubUser, hubPassword)}})
	issuedBefore := hub.IssuedTokens()
	hub.RevokeTokens() // the next pull gets new tokens
	r.do(http.MethodGet, "/v2/library/node/manifests/sha256:"+strings.Repeat("1", 64), nil)
	// Everything an operator looks at.
	for _, path := range []string{"/metrics", "/", "/status.json", "/healthz", "/readyz"} {
		r.do(http.MethodGet, path, nil)
	}
	var cli bytes.Buffer
	app := newApp()
	app.Writer, app.ErrWriter = &cli, &cli
	if err := runAppLocked(context.Background(), app, []string{"regmirror", "cache", "stats", "--data-dir", cfg.DataDir}); err != nil {
		t.Fatalf("cache stats: %v\n%s", err, cli.String())
	}

	tokens := append(issuedBefore, hub.IssuedTokens()...)
	if len(tokens) < 2 || len(hub.CDNRequests()) == 0 {
		t.Fatalf("%d tokens issued, %d CDN requests: the test proves nothing", len(tokens), len(hub.CDNRequests()))
	}
	secrets := map[string]string{
		"password":         hubPassword,
		"basic auth":       basic(hubUser, hubPassword),
		"signed CDN query": "expires=",
		"CDN address":      hub.CDNURL(),
	}
	for i, tok := range tokens {
		secrets[fmt.Sprintf("token #%d", i)] = tok
	}
	outputs := map[string]string{"log": logs.String(), "responses": r.out.String(), "cache stats": cli.String()}
	for where, text := range outputs {
		for what, secret := range secrets {
			if strings.Contains(text, secret) {
				t.Errorf("the %s appears in the %s", what, where)
			}
		}
	}
}

func basic(user, password string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
}

// A client that opens a connection and never finishes its request headers
// is disconnected after the server's ReadHeaderTimeout (10s), and does not
// keep others from being served meanwhile.
func TestSlowlorisHeadersDropped(t *testing.T) {
	t.Parallel()
	base := startDaemonLogging(t, Config{DataDir: t.TempDir()}, slog.New(slog.DiscardHandler))
	waitFor(t, base+"/healthz")
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	fmt.Fprint(conn, "GET /v2/ HTTP/1.1\r\nHost: mirror\r\nX-Slow: ")

	resp, err := http.Get(base + "/v2/")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("another client while one trickles its headers: %v, %v", resp, err)
	}
	resp.Body.Close()

	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	reply, err := bufio.NewReader(conn).ReadString('\n')
	took := time.Since(start)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the connection was still open after %v", took)
	}
	if strings.Contains(reply, "200") {
		t.Fatalf("an unfinished request was answered: %q", reply)
	}
	// Generous slack: this bounds a hang, it does not measure speed.
	if took > 10*time.Second+5*time.Second {
		t.Fatalf("dropped after %v, want about 10s", took)
	}
	t.Logf("a client trickling its headers was dropped after %v", took.Round(time.Millisecond))
}

// Environment of TestDaemonChild: the config file of a daemon to run.
const envDaemonConfig = "REGMIRROR_TEST_DAEMON_CONFIG"

// TestDaemonChild runs `regmirror serve` with the config file named by the
// environment, until it is killed: a daemon in a process of its own, for
// tests that kill -9 it. Run on its own, it does nothing.
func TestDaemonChild(t *testing.T) {
	config := os.Getenv(envDaemonConfig)
	if config == "" {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := newApp().RunContext(ctx, []string{"regmirror", "serve", "--config", config}); err != nil {
		t.Fatal(err)
	}
}

// startDaemonProcess runs a daemon with cfg in a child process and returns
// its URL once it answers, and the process.
func startDaemonProcess(t *testing.T, cfg string, addr string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestDaemonChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), envDaemonConfig+"="+cfg)
	var out logBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("daemon output:\n%s", out.String())
		}
	})
	waitFor(t, "http://"+addr+"/healthz")
	return cmd
}

// A daemon killed with SIGKILL in the middle of a cold download restarts
// on the same data directory with the interrupted download swept away,
// serves every byte of the image correctly, and leaves an index that
// matches the disk.
func TestKillDuringColdDownloadThenRestart(t *testing.T) {
	t.Parallel()
	hub, cfg := startHub(t)
	img, err := hub.PushImage("library/node", "10", registrytest.ImageOptions{Layers: 2, LayerSize: 4 << 20, Seed: 11})
	if err != nil {
		t.Fatal(err)
	}
	addr := testnet.FreeAddr(t)
	u := cfg.Upstreams[0]
	config := filepath.Join(t.TempDir(), "config.yaml")
	yaml := fmt.Sprintf("listen: %s\ndata_dir: %s\nupstreams:\n  - host: docker.io\n    url: %s\n    username: %s\n    password: %s\n    expose: [\"library/*\"]\n",
		addr, cfg.DataDir, u.URL, u.Username, u.Password)
	if err := os.WriteFile(config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}

	daemon := startDaemonProcess(t, config, addr)
	hub.SetThrottle(1 << 20) // a second per MiB: the download is cut mid-way
	layer := img.Layers[0]
	resp, err := http.Get("http://" + addr + "/v2/library/node/blobs/" + layer.Digest.String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 256<<10)); err != nil {
		t.Fatalf("reading the start of the cold blob: %v", err)
	}
	if err := daemon.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	daemon.Wait()
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Fatal("the client read a complete body from a killed daemon")
	}
	resp.Body.Close()
	if entries, _ := os.ReadDir(filepath.Join(cfg.DataDir, "tmp")); len(entries) == 0 {
		t.Fatal("no partial download on disk after the kill: the kill came too late to prove anything")
	}

	hub.SetThrottle(0)
	daemon = startDaemonProcess(t, config, addr)
	if entries, _ := os.ReadDir(filepath.Join(cfg.DataDir, "tmp")); len(entries) != 0 {
		t.Fatalf("the restarted daemon left %d interrupted downloads in tmp", len(entries))
	}
	c := newClient(t, "http://"+addr)
	c.pullImage("library/node", "10", img)
	for _, b := range img.Blobs() {
		status, body := c.do(http.MethodGet, "/v2/library/node/blobs/"+b.Digest.String())
		if status != http.StatusOK || digestOf(body) != b.Digest.String() {
			t.Fatalf("blob %s after the restart: %d, digest %s", b.Digest, status, digestOf(body))
		}
	}
	if err := daemon.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := daemon.Wait(); err != nil {
		t.Fatalf("the restarted daemon did not stop cleanly: %v", err)
	}
	if v := verifyStopped(t, cfg.DataDir); v.Checked != len(img.Blobs()) {
		t.Fatalf("cache verify checked %d blobs, want %d", v.Checked, len(img.Blobs()))
	}
}

// verifyStopped runs what `regmirror cache verify` does on the stopped
// cache in dir, and checks that the index and the blob files agree: no
// corrupt blob, no file without its row, no row without its file.
func verifyStopped(t *testing.T, dir string) cache.Verification {
	t.Helper()
	store, err := cache.Open(context.Background(), cache.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	v, err := store.Verify(context.Background(), cache.VerifyOptions{})
	if err != nil || len(v.Corrupt) != 0 {
		t.Fatalf("cache verify: %v, corrupt %+v", err, v.Corrupt)
	}
	var files int
	err = filepath.WalkDir(filepath.Join(dir, "blobs"), func(_ string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			files++
		}
		return err
	})
	if err != nil || files != v.Checked {
		t.Fatalf("%d blob files on disk, %d indexed (%v)", files, v.Checked, err)
	}
	return v
}

// pushWithLayers publishes repo:1, an image of the given layers, built by
// hand so that two repositories can share a layer.
func pushWithLayers(t *testing.T, hub *registrytest.Registry, repo string, layers ...[]byte) registrytest.Image {
	t.Helper()
	config := []byte(`{"architecture":"amd64","os":"linux","repo":"` + repo + `"}`)
	img := registrytest.Image{Config: ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageConfig, Digest: hub.PutBlob(config), Size: int64(len(config)),
	}}
	for _, l := range layers {
		img.Layers = append(img.Layers, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: hub.PutBlob(l), Size: int64(len(l))})
	}
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: img.Config, Layers: img.Layers}
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	d, err := hub.PutManifest(repo, "1", ocispec.MediaTypeImageManifest, data)
	if err != nil {
		t.Fatal(err)
	}
	img.Manifest = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: d, Size: int64(len(data))}
	img.ManifestBytes = data
	return img
}

// A layer two repositories share survives pruning one of them: the other
// is then pulled with that layer from the cache, and only the pruned
// repository's own layer is gone.
func TestSharedLayerSurvivesPruningOneRepository(t *testing.T) {
	t.Parallel()
	hub, cfg := startHub(t)
	shared, nodeOnly, pythonOnly := bytes.Repeat([]byte("shared "), 10000), []byte("node's own layer"), []byte("python's own layer")
	node := pushWithLayers(t, hub, "library/node", shared, nodeOnly)
	python := pushWithLayers(t, hub, "library/python", shared, pythonOnly)
	base := startDaemonLogging(t, cfg, slog.New(slog.DiscardHandler))
	c := newClient(t, base)
	c.pullImage("library/node", "1", node)
	c.pullImage("library/python", "1", python)

	var out bytes.Buffer
	app := newApp()
	app.Writer, app.ErrWriter = &out, &out
	if err := runAppLocked(context.Background(), app, []string{"regmirror", "cache", "prune", "--data-dir", cfg.DataDir, "--repo", "library/node"}); err != nil {
		t.Fatalf("cache prune: %v\n%s", err, out.String())
	}
	hub.Reset()
	c.pullImage("library/python", "1", python)
	for _, b := range python.Blobs() {
		if n := hub.BlobGets(b.Digest); n != 0 {
			t.Fatalf("python's blob %s was fetched again after pruning node: the shared layer was lost", b.Digest)
		}
	}
	c.pullImage("library/node", "1", node)
	if n := hub.BlobGets(node.Layers[1].Digest); n != 1 {
		t.Fatalf("node's own layer fetched %d times after the prune, want 1: it should have gone", n)
	}
	if n := hub.BlobGets(node.Layers[0].Digest); n != 0 {
		t.Fatalf("the shared layer fetched %d times for node, want 0", n)
	}
}

// A blob larger than the whole budget, but within a max_blob_size the
// operator raised above it, is streamed to its client, intact, without
// being cached and without flushing the cache to make room.
func TestBlobOverBudgetPassesThroughWithoutFlushing(t *testing.T) {
	t.Parallel()
	hub, cfg := startHub(t)
	noFloor := Size(0)
	cfg.Cache = CacheConfig{MaxSize: Size(1 << 20), MaxBlobSize: Size(4 << 20), MinFreeDisk: &noFloor}
	small := pushWithLayers(t, hub, "library/small", bytes.Repeat([]byte("s"), 100<<10))
	huge := pushWithLayers(t, hub, "library/huge", bytes.Repeat([]byte("h"), 3<<20))
	base := startDaemonLogging(t, cfg, slog.New(slog.DiscardHandler))
	c := newClient(t, base)
	c.pullImage("library/small", "1", small)
	for range 2 {
		c.pullImage("library/huge", "1", huge)
	}
	if n := hub.BlobGets(huge.Layers[0].Digest); n != 2 {
		t.Fatalf("the over-budget layer was fetched %d times for two pulls, want 2: it must not be cached", n)
	}
	hub.Reset()
	c.pullImage("library/small", "1", small)
	if n := hub.BlobGetsTotal(); n != 0 {
		t.Fatalf("the small image was fetched again (%d blob GETs): the cache was flushed for the huge one", n)
	}
	if v := c.scrape()["regmirror_cache_passed_through_total"]; v != 2 {
		t.Fatalf("passed through = %v, want 2", v)
	}
}
