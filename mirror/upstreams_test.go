package mirror_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/credentials"
	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/internal/testclock"
	"github.com/regmirror/regmirror/mirror"
	"github.com/regmirror/regmirror/upstream"
)

// The second upstream, a ghcr.io stand-in, has an account of its own.
const (
	ghcrUser     = "ghcr-bot"
	ghcrPassword = "s3cret-ghcr-token"
)

// multiEnv is a mirror in front of two upstreams standing in for docker.io
// and ghcr.io. Both keep org/* private, each behind its own account, so a
// pull that succeeds also proves each got its own credentials.
type multiEnv struct {
	env
	hub, ghcr *registrytest.Registry
}

type multiOptions struct {
	// ghcrURL replaces the ghcr.io upstream's endpoint (a hanging server).
	ghcrURL string
	// hubCap and ghcrCap are the remotes' MaxConcurrentFetches.
	hubCap, ghcrCap int
	// hubAllow and hubDeny are the docker.io remote's repository policy.
	hubAllow, hubDeny []string
	// newRemote is the mirror's Options.NewRemote.
	newRemote func(host string) (mirror.Remote, error)
}

func newMultiEnv(t *testing.T, o multiOptions) *multiEnv {
	t.Helper()
	hub := registrytest.New(t, registrytest.Options{Username: hubUser, Password: hubPassword, Private: []string{"library/*", "org/*"}})
	ghcr := registrytest.New(t, registrytest.Options{Username: ghcrUser, Password: ghcrPassword, Private: []string{"org/*"}})
	ghcrURL := ghcr.URL()
	if o.ghcrURL != "" {
		ghcrURL = o.ghcrURL
	}
	clk := testclock.New(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC))
	metrics := prometheus.NewRegistry()
	store, err := cache.Open(context.Background(), cache.Options{Dir: t.TempDir(), Registerer: metrics, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })

	keys, err := credentials.New(credentials.Config{Static: map[string]credentials.Static{
		"docker.io": {Username: hubUser, Password: hubPassword},
		"ghcr.io":   {Username: ghcrUser, Password: ghcrPassword},
	}})
	if err != nil {
		t.Fatal(err)
	}
	newClient := func(host, url string, retries int) *upstream.Client {
		c, err := upstream.New(upstream.Config{Host: host, URL: url, Retries: retries}, keys, upstream.Options{Registerer: metrics})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}
	ghcrRetries := 0
	if o.ghcrURL != "" {
		ghcrRetries = -1 // a hanging upstream fails fast once released
	}
	m, err := mirror.New(mirror.Options{
		Cache: store,
		Remotes: []mirror.Remote{
			{Host: "docker.io", Upstream: newClient("docker.io", hub.URL(), 0), MaxConcurrentFetches: o.hubCap, Allow: o.hubAllow, Deny: o.hubDeny},
			{Host: "ghcr.io", Upstream: newClient("ghcr.io", ghcrURL, ghcrRetries), MaxConcurrentFetches: o.ghcrCap},
		},
		NewRemote:  o.newRemote,
		Registerer: metrics,
		Now:        clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)
	return &multiEnv{
		env: env{upstream: hub, mirror: srv, store: store, clock: clk, metrics: metrics},
		hub: hub, ghcr: ghcr,
	}
}

// pushApp publishes a different org/app:1 on each upstream: the seeds
// differ, so every layer, config and manifest differs.
func (e *multiEnv) pushApp(t *testing.T) (hubApp, ghcrApp registrytest.Index) {
	t.Helper()
	var err error
	if hubApp, err = e.hub.PushIndex("org/app", "1", registrytest.ImageOptions{Layers: 2, LayerSize: 64 << 10, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	if ghcrApp, err = e.ghcr.PushIndex("org/app", "1", registrytest.ImageOptions{Layers: 2, LayerSize: 64 << 10, Seed: 2}); err != nil {
		t.Fatal(err)
	}
	e.hub.Reset()
	e.ghcr.Reset()
	return hubApp, ghcrApp
}

// route says how a client names a repository: the path's name and the query.
type route struct {
	name  string
	query string // "" or "?ns=..."
}

// pull pulls a whole index through r (tag HEAD, then everything by
// digest) and checks every byte against want.
func (e *multiEnv) pull(t *testing.T, r route, tag string, want registrytest.Index) {
	t.Helper()
	base := "/v2/" + r.name
	head := e.do(t, http.MethodHead, base+"/manifests/"+tag+r.query, nil)
	if head.status != http.StatusOK || head.header.Get("Docker-Content-Digest") != want.Descriptor.Digest.String() {
		t.Fatalf("HEAD %s:%s%s = %d digest %q, want 200 %s", r.name, tag, r.query, head.status,
			head.header.Get("Docker-Content-Digest"), want.Descriptor.Digest)
	}
	e.expectContent(t, base+"/manifests/"+want.Descriptor.Digest.String()+r.query, want.Descriptor, want.Bytes)
	for _, img := range want.Images {
		e.expectContent(t, base+"/manifests/"+img.Manifest.Digest.String()+r.query, img.Manifest, img.ManifestBytes)
		for _, b := range img.Blobs() {
			got := e.do(t, http.MethodGet, base+"/blobs/"+b.Digest.String()+r.query, nil)
			if got.err != nil || got.status != http.StatusOK || sha256Digest(got.body) != b.Digest {
				t.Fatalf("GET blob %s%s = %d, %v, digest %s", b.Digest, r.query, got.status, got.err, sha256Digest(got.body))
			}
		}
	}
}

// fetchedOnce checks that reg served every blob of ix exactly once.
func fetchedOnce(t *testing.T, name string, reg *registrytest.Registry, ix registrytest.Index) {
	t.Helper()
	for _, b := range ix.Blobs() {
		if n := reg.BlobGets(b.Digest); n != 1 {
			t.Errorf("%s: %d GETs of blob %s, want 1", name, n, b.Digest)
		}
	}
}

// Each way of naming a registry reaches that registry's own org/app, and
// only that registry.
func TestRoutingToTwoUpstreams(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		route  route
		toGHCR bool
	}{
		{"default registry", route{name: "org/app"}, false},
		{"ns docker.io", route{name: "org/app", query: "?ns=docker.io"}, false},
		{"ns registry-1.docker.io", route{name: "org/app", query: "?ns=registry-1.docker.io"}, false},
		{"ns ghcr.io", route{name: "org/app", query: "?ns=ghcr.io"}, true},
		{"ns is case-insensitive", route{name: "org/app", query: "?ns=GHCR.io"}, true},
		{"path prefix ghcr.io", route{name: "ghcr.io/org/app"}, true},
		{"path prefix docker.io", route{name: "docker.io/org/app"}, false},
		{"path prefix index.docker.io", route{name: "index.docker.io/org/app"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newMultiEnv(t, multiOptions{})
			hubApp, ghcrApp := e.pushApp(t)
			want, used, unused := hubApp, e.hub, e.ghcr
			if tt.toGHCR {
				want, used, unused = ghcrApp, e.ghcr, e.hub
			}
			e.pull(t, tt.route, "1", want)
			fetchedOnce(t, tt.name, used, want)
			if reqs := unused.Requests(); len(reqs) != 0 {
				t.Fatalf("the other upstream got %d requests: %+v", len(reqs), reqs)
			}
		})
	}
}

// org/app on docker.io and org/app on ghcr.io are different repositories:
// pulled through one mirror, cold and then warm, each keeps its own tag,
// manifests and layers.
func TestSameNameOnTwoUpstreamsNeverMix(t *testing.T) {
	t.Parallel()
	e := newMultiEnv(t, multiOptions{})
	hubApp, ghcrApp := e.pushApp(t)
	hubRoute, ghcrRoute := route{name: "org/app"}, route{name: "org/app", query: "?ns=ghcr.io"}

	e.pull(t, hubRoute, "1", hubApp)
	e.pull(t, ghcrRoute, "1", ghcrApp)
	fetchedOnce(t, "docker.io", e.hub, hubApp)
	fetchedOnce(t, "ghcr.io", e.ghcr, ghcrApp)

	e.hub.Reset()
	e.ghcr.Reset()
	e.pull(t, ghcrRoute, "1", ghcrApp)
	e.pull(t, hubRoute, "1", hubApp)
	if n := len(e.hub.Requests()) + len(e.ghcr.Requests()); n != 0 {
		t.Fatalf("warm pulls within the tag TTL made %d upstream requests, want 0", n)
	}
}

// Blobs are content-addressed: the same bytes on two registries are
// stored and fetched once.
func TestBlobsSharedAcrossUpstreams(t *testing.T) {
	t.Parallel()
	e := newMultiEnv(t, multiOptions{})
	data := []byte(strings.Repeat("shared layer ", 4096))
	d := e.hub.PutBlob(data)
	e.ghcr.PutBlob(data)
	for _, r := range []route{{name: "org/app"}, {name: "org/app", query: "?ns=ghcr.io"}} {
		got := e.do(t, http.MethodGet, "/v2/"+r.name+"/blobs/"+d.String()+r.query, nil)
		if got.status != http.StatusOK || sha256Digest(got.body) != d {
			t.Fatalf("GET blob%s = %d", r.query, got.status)
		}
	}
	if hub, ghcr := e.hub.BlobGets(d), e.ghcr.BlobGets(d); hub != 1 || ghcr != 0 {
		t.Fatalf("blob GETs: docker.io %d, ghcr.io %d; want 1 and 0", hub, ghcr)
	}
}

// A registry that is not configured is refused without contacting anyone.
func TestUnconfiguredRegistryRefused(t *testing.T) {
	t.Parallel()
	e := newMultiEnv(t, multiOptions{})
	for _, path := range []string{"/v2/org/app/manifests/1?ns=quay.io", "/v2/quay.io/org/app/manifests/1"} {
		got := e.do(t, http.MethodGet, path, nil)
		if got.status != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", path, got.status)
		}
		assertOCIError(t, got, "NAME_UNKNOWN")
	}
	if n := len(e.hub.Requests()) + len(e.ghcr.Requests()); n != 0 {
		t.Fatalf("%d upstream requests", n)
	}
}

// hangingRegistry accepts requests and answers none until released, like an
// upstream whose load balancer still accepts connections but whose
// backends are gone.
type hangingRegistry struct {
	*httptest.Server
	release chan struct{}
	pending atomic.Int64
}

func newHangingRegistry(t *testing.T) *hangingRegistry {
	h := &hangingRegistry{release: make(chan struct{})}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.pending.Add(1)
		defer h.pending.Add(-1)
		select {
		case <-h.release:
		case <-r.Context().Done():
		}
		panic(http.ErrAbortHandler) // drop the connection: no answer at all
	}))
	t.Cleanup(h.Close)
	return h
}

// With ghcr.io hanging and more requests for it than its cap waiting, a
// cold pull from docker.io goes through untouched. With ghcr.io gone
// altogether, its requests fail at once with a clear error.
func TestOneUpstreamDownDoesNotSlowTheOther(t *testing.T) {
	t.Parallel()
	t.Run("hanging", func(t *testing.T) {
		t.Parallel()
		hang := newHangingRegistry(t)
		const ghcrCap = 2
		e := newMultiEnv(t, multiOptions{ghcrURL: hang.URL, ghcrCap: ghcrCap})
		hubApp, _ := e.pushApp(t)

		var stuck sync.WaitGroup
		statuses := make(chan int, ghcrCap+2)
		for i := range ghcrCap + 2 {
			stuck.Go(func() {
				// Distinct repositories: each needs its own upstream handshake.
				statuses <- e.do(t, http.MethodHead, "/v2/ghcr.io/org/app"+strconv.Itoa(i)+"/manifests/1", nil).status
			})
		}
		waitUntil(t, "ghcr.io's slots taken by hanging requests, two more waiting", func() bool {
			return hang.pending.Load() >= ghcrCap && gaugeValue(e.metrics, "regmirror_upstream_fetches_waiting", "ghcr.io") == 2
		})

		e.pull(t, route{name: "org/app"}, "1", hubApp)
		fetchedOnce(t, "docker.io", e.hub, hubApp)
		if hang.pending.Load() == 0 || gaugeValue(e.metrics, "regmirror_upstream_fetches_waiting", "ghcr.io") != 2 {
			t.Fatal("the ghcr.io requests ended before the docker.io pull did: nothing was proven")
		}

		close(hang.release)
		stuck.Wait()
		close(statuses)
		for status := range statuses {
			if status < 500 {
				t.Errorf("a request to the hanging upstream ended with %d, want 5xx", status)
			}
		}
	})
	t.Run("closed", func(t *testing.T) {
		t.Parallel()
		e := newMultiEnv(t, multiOptions{})
		hubApp, _ := e.pushApp(t)
		e.ghcr.Close()
		got := e.do(t, http.MethodHead, "/v2/ghcr.io/org/app/manifests/1", nil)
		if got.status != http.StatusBadGateway {
			t.Fatalf("HEAD with ghcr.io closed = %d, want 502", got.status)
		}
		e.pull(t, route{name: "org/app"}, "1", hubApp)
		fetchedOnce(t, "docker.io", e.hub, hubApp)
	})
}

// A full upstream queues fetches instead of failing them: with a cap of
// one and a download stalled, a second blob waits, then is served.
func TestFetchCapQueuesInsteadOfFailing(t *testing.T) {
	t.Parallel()
	e := newMultiEnv(t, multiOptions{hubCap: 1})
	hubApp, _ := e.pushApp(t)
	first, second := hubApp.Images[0].Layers[0], hubApp.Images[0].Layers[1]
	stall := e.hub.InjectFault(first.Digest, registrytest.Fault{Kind: registrytest.Stall, Times: 1})
	defer stall.Release()

	var wg sync.WaitGroup
	results := map[string]response{}
	var mu sync.Mutex
	get := func(name string, path string) {
		got := e.do(t, http.MethodGet, path, nil)
		mu.Lock()
		results[name] = got
		mu.Unlock()
	}
	wg.Go(func() { get("first", "/v2/org/app/blobs/"+first.Digest.String()) })
	<-stall.Hit()
	wg.Go(func() { get("second", "/v2/org/app/blobs/"+second.Digest.String()) })
	waitUntil(t, "the second download waiting for the first's slot", func() bool {
		return gaugeValue(e.metrics, "regmirror_upstream_fetches_waiting", "docker.io") == 1
	})
	if n := e.hub.BlobGets(second.Digest); n != 0 {
		t.Fatalf("the second blob was fetched while the cap was full (%d GETs)", n)
	}
	stall.Release()
	wg.Wait()
	for name, desc := range map[string]ocispec.Descriptor{"first": first, "second": second} {
		got := results[name]
		if got.err != nil || got.status != http.StatusOK || sha256Digest(got.body) != desc.Digest || int64(len(got.body)) != desc.Size {
			t.Fatalf("%s blob: %d, %v, %d bytes", name, got.status, got.err, len(got.body))
		}
	}
	if n := e.hub.BlobGets(second.Digest); n != 1 {
		t.Fatalf("%d upstream GETs of the second blob, want 1", n)
	}
	if in := gaugeValue(e.metrics, "regmirror_upstream_fetches_in_flight", "docker.io"); in != 0 {
		t.Fatalf("%v fetches still in flight after both finished", in)
	}
}

// Allow and deny globs decide per repository; a refused pull is a 403
// DENIED that never reaches the upstream.
func TestRepositoryPolicy(t *testing.T) {
	t.Parallel()
	e := newMultiEnv(t, multiOptions{hubAllow: []string{"library/*", "org/**"}, hubDeny: []string{"org/secret/**"}})
	tests := []struct {
		name    string
		allowed bool
	}{
		{"library/node", true},
		{"node", true}, // short for library/node
		{"org/app", true},
		{"org/team/app", true},
		{"org/secret/app", false},
		{"org/secret/deep/app", false},
		{"other/app", false},
		{"library/node/sub", false},
	}
	for _, tt := range tests {
		if _, err := e.hub.PushImage(routeRepo(tt.name), "1", registrytest.ImageOptions{Layers: 1, LayerSize: 512}); err != nil {
			t.Fatal(err)
		}
	}
	e.hub.Reset()
	for _, tt := range tests {
		got := e.do(t, http.MethodGet, "/v2/"+tt.name+"/manifests/1", nil)
		switch {
		case tt.allowed && got.status != http.StatusOK:
			t.Errorf("%s: %d %s, want 200", tt.name, got.status, got.body)
		case !tt.allowed && got.status != http.StatusForbidden:
			t.Errorf("%s: %d, want 403", tt.name, got.status)
		case !tt.allowed:
			assertOCIError(t, got, "DENIED")
			n := e.hub.CountRequests(func(r registrytest.Request) bool { return strings.Contains(r.Path, "/"+routeRepo(tt.name)+"/") })
			if n != 0 {
				t.Errorf("%s: denied, yet %d upstream requests", tt.name, n)
			}
		}
	}
}

func routeRepo(name string) string {
	if !strings.Contains(name, "/") {
		return "library/" + name
	}
	return name
}

// With Options.NewRemote (upstreams.allow_any), a registry nobody
// configured is mirrored on first use, and its Remote is kept.
func TestNewRemoteForUnlistedRegistry(t *testing.T) {
	t.Parallel()
	third := registrytest.New(t, registrytest.Options{})
	ix, err := third.PushIndex("team/tool", "2", registrytest.ImageOptions{Layers: 1, LayerSize: 4096, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	third.Reset()
	var made atomic.Int64
	newRemote := func(host string) (mirror.Remote, error) {
		made.Add(1)
		if host != "registry.example.com" {
			return mirror.Remote{}, errors.New("not on the test's list")
		}
		c, err := upstream.New(upstream.Config{Host: host, URL: third.URL()}, nil, upstream.Options{})
		if err != nil {
			return mirror.Remote{}, err
		}
		return mirror.Remote{Host: host, Upstream: c}, nil
	}
	e := newMultiEnv(t, multiOptions{newRemote: newRemote})

	e.pull(t, route{name: "registry.example.com/team/tool"}, "2", ix)
	e.pull(t, route{name: "team/tool", query: "?ns=registry.example.com"}, "2", ix)
	if n := made.Load(); n != 1 {
		t.Fatalf("NewRemote called %d times for one host, want 1", n)
	}
	if n := third.TokenRequests("repository:team/tool:pull"); n > 1 {
		t.Fatalf("%d token requests: the remote was not kept", n)
	}
	refused := e.do(t, http.MethodGet, "/v2/refused.example.com/x/manifests/1", nil)
	if refused.status != http.StatusNotFound {
		t.Fatalf("a host NewRemote refuses = %d, want 404", refused.status)
	}
	assertOCIError(t, refused, "NAME_UNKNOWN")
}

// gaugeValue reads the gauge name{upstream=...} from reg; -1 if absent.
func gaugeValue(reg *prometheus.Registry, name, upstream string) float64 {
	families, err := reg.Gather()
	if err != nil {
		return -1
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "upstream" && l.GetValue() == upstream {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return -1
}

// waitUntil polls cond until it holds: it waits for the mirror to reach a
// state (a request queued), not for time to pass. The deadline only keeps
// a broken mirror from hanging the run.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	deadline := time.After(time.Minute)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("gave up waiting for %s", what)
		}
	}
}
