package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/eviction"
	"github.com/regmirror/regmirror/internal/admin"
	"github.com/regmirror/regmirror/internal/notify"
	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/mirror"
)

// hook is a webhook receiver on loopback that checks each delivery's
// signature and content type and passes its events on, in order.
type hook struct {
	url    string
	events chan notify.Event
}

func startHook(t *testing.T, secret []byte) *hook {
	t.Helper()
	h := &hook{events: make(chan notify.Event, 100)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("hook: %v", err)
			return
		}
		if !notify.Verify(secret, body, r.Header.Get(notify.SignatureHeader)) {
			t.Errorf("hook: %s %q does not verify", notify.SignatureHeader, r.Header.Get(notify.SignatureHeader))
		}
		if ct := r.Header.Get("Content-Type"); ct != notify.MediaType {
			t.Errorf("hook: Content-Type %q", ct)
		}
		if auth := r.Header.Get("Authorization"); auth != "Bearer hook-token" {
			t.Errorf("hook: Authorization %q, want the headers_file's", auth)
		}
		var env notify.Envelope
		if err := json.Unmarshal(body, &env); err != nil {
			t.Errorf("hook: %v", err)
		}
		for _, e := range env.Events {
			h.events <- e
		}
	}))
	t.Cleanup(srv.Close)
	h.url = srv.URL
	return h
}

// until returns the events received up to and including the first push
// of tag: everything the daemon reported before that push.
func (h *hook) until(tag string) []notify.Event {
	var got []notify.Event
	for {
		e := <-h.events // the test's deadline is the only bound
		got = append(got, e)
		if e.Action == notify.ActionPush && e.Target.Tag == tag {
			return got
		}
	}
}

// webhookDaemon runs a daemon with a Docker-Hub-like upstream, hosted
// team/* repositories (user ci, password pw) and endpoint, which it fills
// in with a secret and a headers file. tweak, if any, changes the
// configuration last.
func webhookDaemon(t *testing.T, endpoint EndpointConfig, tweak func(*Config)) (*registrytest.Registry, string, []byte) {
	t.Helper()
	hub, cfg := startHub(t)
	dir := t.TempDir()
	htpasswd := filepath.Join(dir, "htpasswd")
	secret := []byte("hook-signing-secret")
	files := map[string]string{
		htpasswd:                          htpasswdLine(t, "ci", "pw", mirror.MinBcryptCost),
		filepath.Join(dir, "secret"):      string(secret) + "\n",
		filepath.Join(dir, "hook.header"): "# the receiver's token\nAuthorization: Bearer hook-token\n",
	}
	for path, content := range files {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg.Hosted = HostedConfig{Htpasswd: htpasswd, Repositories: []string{"team/*"}}
	endpoint.SecretFile, endpoint.HeadersFile = filepath.Join(dir, "secret"), filepath.Join(dir, "hook.header")
	cfg.Notifications.Endpoints = []EndpointConfig{endpoint}
	if tweak != nil {
		tweak(&cfg)
	}
	if err := cfg.withDefaults().validate(); err != nil {
		t.Fatal(err)
	}
	return hub, startDaemonLogging(t, cfg, slog.New(slog.DiscardHandler)), secret
}

func randomImage(t *testing.T) v1.Image {
	t.Helper()
	img, err := random.Image(2048, 2)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// Pushing images with go-containerregistry (config, layers, manifest)
// sends exactly one push event per manifest, none for the blobs, signed,
// naming the manifest, the tag, the user and the client. A cold pull sends
// one pull event per manifest and blob filled from the upstream; pulling
// it again, all hits, sends none.
func TestWebhookOnePushEventPerManifest(t *testing.T) {
	t.Parallel()
	h := startHook(t, []byte("hook-signing-secret"))
	hub, base, _ := webhookDaemon(t, EndpointConfig{Name: "ci", URL: h.url}, nil)
	host := strings.TrimPrefix(base, "http://")
	node, err := hub.PushImage("library/node", "20", registrytest.ImageOptions{Layers: 2, LayerSize: 4096})
	if err != nil {
		t.Fatal(err)
	}

	images := map[string]v1.Image{"1": randomImage(t), "2": randomImage(t)}
	pushTo(t, mustRef(t, host+"/team/app:1"), images["1"])
	pushTo(t, mustRef(t, host+"/team/app:2"), images["2"])
	got := h.until("1")
	got = append(got, h.until("2")...)
	if len(got) != 2 {
		t.Fatalf("pushing 2 images sent %d events, want 2 (one per manifest): %+v", len(got), got)
	}
	for _, e := range got {
		img := images[e.Target.Tag]
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		mt, _ := img.MediaType()
		size, _ := img.Size()
		want := notify.Target{MediaType: string(mt), Digest: digest.Digest(d.String()), Size: size, Repository: "team/app",
			URL: base + "/v2/team/app/manifests/" + d.String(), Tag: e.Target.Tag}
		if e.Target != want {
			t.Errorf("push target = %+v, want %+v", e.Target, want)
		}
		if e.Actor.Name != "ci" || e.Request.Method != http.MethodPut || !strings.HasPrefix(e.Request.Addr, "127.0.0.1:") ||
			e.Request.Host != host || e.Request.ID == "" || e.ID == "" || e.Source.InstanceID == "" {
			t.Errorf("push event = %+v: want actor ci, a PUT from 127.0.0.1 to %s with a request id, an id and a source", e, host)
		}
	}

	c := newClient(t, base)
	c.pullImage("library/node", "20", node)
	pushTo(t, mustRef(t, host+"/team/app:3"), randomImage(t)) // a marker: what came before it is in
	pulls := h.until("3")
	pulls = pulls[:len(pulls)-1]
	want := map[string]bool{node.Manifest.Digest.String(): true}
	for _, b := range node.Blobs() {
		want[b.Digest.String()] = true
	}
	if len(pulls) != len(want) {
		t.Fatalf("a cold pull of a manifest and %d blobs sent %d events: %+v", len(want)-1, len(pulls), pulls)
	}
	for _, e := range pulls {
		if e.Action != notify.ActionPull || !want[e.Target.Digest.String()] || e.Target.Repository != "docker.io/library/node" ||
			e.Target.Registry != "docker.io" {
			t.Errorf("cold pull event = %+v", e)
		}
		delete(want, e.Target.Digest.String())
	}

	c.pullImage("library/node", "20", node)
	pushTo(t, mustRef(t, host+"/team/app:4"), randomImage(t))
	if again := h.until("4"); len(again) != 1 {
		t.Errorf("pulling a cached image sent %d events besides the push: %+v", len(again)-1, again)
	}
}

// A receiver that hangs never slows a pull: with the receiver holding the
// first delivery, pulls complete, the endpoint's queue fills to its bound
// and the rest of the events are dropped and counted.
func TestWebhookHungReceiverDoesNotBlockPulls(t *testing.T) {
	t.Parallel()
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // before srv.Close, which waits for the handler
	hub, base, _ := webhookDaemon(t, EndpointConfig{Name: "hung", URL: srv.URL, QueueSize: 2, Timeout: time.Hour}, nil)
	first, err := hub.PushImage("library/alpine", "3", registrytest.ImageOptions{Layers: 1})
	if err != nil {
		t.Fatal(err)
	}
	second, err := hub.PushImage("library/node", "20", registrytest.ImageOptions{Layers: 3})
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, base)
	// Resolving the tag fills one manifest: one event, which the receiver
	// takes and holds.
	if status, _ := c.do(http.MethodHead, "/v2/library/alpine/manifests/3"); status != http.StatusOK {
		t.Fatalf("HEAD alpine:3 = %d", status)
	}
	<-arrived

	c.pullImage("library/node", "20", second) // 1 manifest + 4 blobs: 5 events
	c.pullImage("library/alpine", "3", first) // 2 blobs: 2 more
	m := c.scrape()
	if got := m[`regmirror_notifications_queued{endpoint="hung"}`]; got != 2 {
		t.Errorf("queued = %v, want the queue's bound, 2", got)
	}
	if got := m[`regmirror_notifications_dropped_total{endpoint="hung",reason="queue_full"}`]; got != 5 {
		t.Errorf("dropped = %v, want 5 (7 events, room for 2)", got)
	}
}

// An upstream that fails until its breaker opens sends breaker_open,
// naming the registry, and nothing else.
func TestWebhookBreakerOpens(t *testing.T) {
	t.Parallel()
	h := startHook(t, []byte("hook-signing-secret"))
	hub, base, _ := webhookDaemon(t, EndpointConfig{URL: h.url}, func(cfg *Config) {
		cfg.Upstreams[0].BreakerMinRequests = 2
	})
	hub.SetDown(true)
	c := newClient(t, base)
	for _, tag := range []string{"1", "2"} {
		if status, _ := c.do(http.MethodHead, "/v2/library/node/manifests/"+tag); status == http.StatusOK {
			t.Fatalf("HEAD node:%s = 200 from a down upstream", tag)
		}
	}
	pushTo(t, mustRef(t, strings.TrimPrefix(base, "http://")+"/team/app:marker"), randomImage(t))
	got := h.until("marker")
	if e := got[0]; len(got) != 2 || e.Action != notify.ActionBreakerOpen || e.Target.Registry != "docker.io" {
		t.Errorf("events = %+v, want breaker_open of docker.io, then the push", got)
	}
}

// Deleting a tag and then the manifest by digest sends a delete event
// each, naming what was deleted and by whom.
func TestWebhookDeleteEvents(t *testing.T) {
	t.Parallel()
	h := startHook(t, []byte("hook-signing-secret"))
	_, base, _ := webhookDaemon(t, EndpointConfig{URL: h.url, Actions: []string{"push", "delete"}}, func(cfg *Config) {
		cfg.Hosted.Delete = true
		cfg.Hosted.Permissions = []PermissionConfig{{Repositories: []string{"team/*"}, Users: []string{"ci"},
			Actions: []string{"pull", "push", "delete"}}}
	})
	host := strings.TrimPrefix(base, "http://")
	img := randomImage(t)
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	pushTo(t, mustRef(t, host+"/team/app:1"), img)
	auth := remote.WithAuth(authn.FromConfig(authn.AuthConfig{Username: "ci", Password: "pw"}))
	for _, ref := range []string{host + "/team/app:1", host + "/team/app@" + d.String()} {
		if err := remote.Delete(mustRef(t, ref), auth); err != nil {
			t.Fatalf("delete %s: %v", ref, err)
		}
	}
	pushTo(t, mustRef(t, host+"/team/app:marker"), randomImage(t))
	got := h.until("marker")
	if len(got) != 4 {
		t.Fatalf("got %d events, want push, 2 deletes, push: %+v", len(got), got)
	}
	byTag, byDigest := got[1], got[2]
	if byTag.Action != notify.ActionDelete || byTag.Target.Tag != "1" || byTag.Target.Repository != "team/app" ||
		byTag.Target.URL != base+"/v2/team/app/manifests/1" || byTag.Actor.Name != "ci" || byTag.Request.Method != http.MethodDelete {
		t.Errorf("deleting the tag sent %+v", byTag)
	}
	if byDigest.Action != notify.ActionDelete || byDigest.Target.Digest.String() != d.String() || byDigest.Target.Tag != "" ||
		byDigest.Actor.Name != "ci" {
		t.Errorf("deleting the manifest sent %+v", byDigest)
	}
}

// Endpoint settings that cannot work are refused at their key.
func TestNotificationsConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		endpoint EndpointConfig
		key      string
	}{
		{"no URL", EndpointConfig{}, "notifications.endpoints[0].url"},
		{"not http", EndpointConfig{URL: "ftp://example.com/hook"}, "notifications.endpoints[0].url"},
		{"unknown action", EndpointConfig{URL: "https://example.com/hook", Actions: []string{"push", "mount"}}, "notifications.endpoints[0].actions[1]"},
		{"negative queue", EndpointConfig{URL: "https://example.com/hook", QueueSize: -1}, "notifications.endpoints[0].queue_size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := NotificationsConfig{Endpoints: []EndpointConfig{tt.endpoint}}.validate()
			if err == nil || !strings.Contains(fmt.Sprint(keysOf(err)), tt.key) {
				t.Errorf("validate = %v, want an error at %s", err, tt.key)
			}
		})
	}
	if err := (NotificationsConfig{Endpoints: []EndpointConfig{{URL: "https://example.com/hook", Actions: notify.Actions}}}).validate(); err != nil {
		t.Errorf("a valid endpoint: %v", err)
	}
}

// A headers file takes "Name: value" lines and comments; anything else
// is refused with its line number and without its content.
func TestReadHeadersFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "headers")
	if err := os.WriteFile(path, []byte("# comment\n\nauthorization: Bearer a:b\nX-Team: infra\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h, err := readHeadersFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if h.Get("Authorization") != "Bearer a:b" || h.Get("X-Team") != "infra" || len(h) != 2 {
		t.Errorf("headers = %v", h)
	}
	if err := os.WriteFile(path, []byte("X-Ok: 1\nsecret-token-without-colon\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = readHeadersFile(path)
	if err == nil || !strings.Contains(err.Error(), ":2:") || strings.Contains(err.Error(), "secret-token") {
		t.Errorf("a bad line: err = %v, want its line number and not its content", err)
	}
}

// keysOf lists the config keys that err's problems are at.
func keysOf(err error) []string {
	var keys []string
	if ke, ok := err.(*keyError); ok {
		return []string{ke.key}
	}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range joined.Unwrap() {
			keys = append(keys, keysOf(e)...)
		}
	}
	return keys
}

// An eviction pass reports each manifest and blob it removed, once, a
// blob with its size.
func TestEvictionSendsEvents(t *testing.T) {
	t.Parallel()
	secret := []byte("hook-signing-secret")
	h := startHook(t, secret)
	n, err := notify.New([]notify.Endpoint{{URL: h.url, Secret: secret, Headers: http.Header{"Authorization": {"Bearer hook-token"}}}},
		notify.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	env := newBudgetEnv(t, eviction.Config{MaxSize: 1 << 40})
	img := env.push(t, "library/node", 1, 2, 4096)
	pullImage(t, env.mirror.URL, "library/node", "1")
	sizes := map[digest.Digest]int64{img.Manifest.Digest: 0} // a manifest's size is not known
	for _, b := range img.Blobs() {
		sizes[b.Digest] = b.Size
	}
	ev, err := eviction.New(admin.EvictionCache{Store: env.store, Evicted: reportEvictions(n)}, eviction.Config{MaxSize: 1}, eviction.Options{})
	if err != nil {
		t.Fatal(err)
	}
	env.clock.Advance(time.Hour)
	pass, err := ev.Evict(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if pass.Removed < len(img.Blobs()) {
		t.Fatalf("the pass removed %d, want at least the %d blobs", pass.Removed, len(img.Blobs()))
	}
	n.BreakerChanged("marker", true) // what came before it is in
	var got []notify.Event
	for e := <-h.events; e.Target.Registry != "marker"; e = <-h.events {
		got = append(got, e)
	}
	if len(got) != pass.Removed {
		t.Fatalf("a pass that removed %d sent %d events: %+v", pass.Removed, len(got), got)
	}
	for _, e := range got {
		size, ok := sizes[e.Target.Digest]
		if e.Action != notify.ActionEvict || !ok || e.Target.Size != size {
			t.Errorf("eviction event %+v: want evict of one of the image's digests with its size", e)
		}
		delete(sizes, e.Target.Digest)
	}
}

// A secret file that is missing or empty, or a headers file that does not
// parse, is reported at its key, as config check shows it.
func TestNotificationsFileErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	empty, headers := filepath.Join(dir, "empty"), filepath.Join(dir, "headers")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(headers, []byte("no colon here\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := NotificationsConfig{Endpoints: []EndpointConfig{
		{URL: "https://example.com/a", SecretFile: filepath.Join(dir, "missing")},
		{URL: "https://example.com/b", SecretFile: empty},
		{URL: "https://example.com/c", HeadersFile: headers},
		{URL: "https://example.com/d"},
	}}
	got := keysOf(errors.Join(cfg.fileErrors()...))
	want := []string{"notifications.endpoints[0].secret_file", "notifications.endpoints[1].secret_file",
		"notifications.endpoints[2].headers_file"}
	if !slices.Equal(got, want) {
		t.Errorf("file errors at %v, want %v", got, want)
	}
	if _, err := cfg.endpoints(); err == nil {
		t.Error("endpoints() accepted files that do not work")
	}
}

// An image of the prefetch list that the upstream does not have sends a
// prefetch_failure event naming it and why.
func TestWebhookPrefetchFailure(t *testing.T) {
	t.Parallel()
	h := startHook(t, []byte("hook-signing-secret"))
	var dataDir string
	_, base, _ := webhookDaemon(t, EndpointConfig{URL: h.url, Actions: []string{"prefetch_failure", "push"}}, func(cfg *Config) {
		cfg.Prefetch.Images = []PrefetchImage{{Image: "docker.io/library/nowhere:1"}}
		dataDir = cfg.DataDir
	})
	// A run asked for now waits behind the startup run: once it returns,
	// its failure has been reported.
	if _, _, err := runCLI(t, "prefetch", "--data-dir", dataDir, "--json"); err == nil {
		t.Fatal("prefetch of an image the upstream lacks succeeded")
	}
	pushTo(t, mustRef(t, strings.TrimPrefix(base, "http://")+"/team/app:marker"), randomImage(t))
	got := h.until("marker")
	if len(got) < 2 {
		t.Fatalf("events = %+v, want prefetch failures, then the push", got)
	}
	for _, e := range got[:len(got)-1] {
		if e.Action != notify.ActionPrefetchFailure || e.Target.Registry != "docker.io" ||
			e.Target.Repository != "library/nowhere" || e.Target.Tag != "1" || e.Reason == "" {
			t.Errorf("event = %+v, want a prefetch_failure of docker.io/library/nowhere:1 with a reason", e)
		}
	}
}
