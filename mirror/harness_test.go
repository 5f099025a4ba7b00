package mirror_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/credentials"
	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/internal/testclock"
	"github.com/regmirror/regmirror/mirror"
	"github.com/regmirror/regmirror/upstream"
)

// TestMain hides the machine's docker credentials, so that what a test
// proves about credentials comes from the test alone.
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

// Fixture credentials: the upstream serves library/* only with them.
const (
	hubUser     = "mirror-bot"
	hubPassword = "s3cret-hub-password"
)

// env is a mirror in front of a Docker-Hub-like upstream, both on loopback.
type env struct {
	upstream *registrytest.Registry
	mirror   *httptest.Server
	store    *cache.Store
	clock    *testclock.Clock
	metrics  *prometheus.Registry
	m        *mirror.Mirror
	dir      string // the cache's data directory
}

type envOptions struct {
	// private makes library/* need credentials upstream, and exposes it
	// (Remote.Expose) unless unexposed is set too.
	private      bool
	unexposed    bool
	withoutCreds bool
	tagTTL       time.Duration
	staleIfError time.Duration
	// upstream and remote adjust the upstream client's config and the
	// mirror's Remote; newEnv fills in hosts, URL and client.
	upstream upstream.Config
	remote   mirror.Remote
	// transport, when set, is the upstream client's HTTP transport (tests
	// put faults between the mirror and the registry with it); cache
	// adjusts the store's options, newEnv fills in Dir, Registerer and Now.
	transport http.RoundTripper
	cache     cache.Options
	// sendTimeout is the mirror's Options.SendTimeout.
	sendTimeout time.Duration
	// missLimits is the mirror's Options.MissLimits.
	missLimits mirror.MissLimits
	// tagsPageSize is the upstream's registrytest.Options.TagsPageSize.
	tagsPageSize int
	// referrers is the upstream's registrytest.Options.Referrers.
	referrers bool
	// wrap, when set, wraps the mirror's handler in the test server.
	wrap func(http.Handler) http.Handler
	// shared, when set, is the upstream, another env's: replicas of a
	// cluster share theirs. peers is the mirror's Options.Peers.
	shared *registrytest.Registry
	peers  mirror.Peers
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	regOpts := registrytest.Options{Username: hubUser, Password: hubPassword, TagsPageSize: o.tagsPageSize, Referrers: o.referrers}
	if o.private {
		regOpts.Private = []string{"library/*"}
	}
	reg := o.shared
	if reg == nil {
		reg = registrytest.New(t, regOpts)
	}
	clk := testclock.New(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC))
	metrics := prometheus.NewRegistry()

	cacheOpts := o.cache
	cacheOpts.Dir, cacheOpts.Registerer, cacheOpts.Now = t.TempDir(), metrics, clk.Now
	store, err := cache.Open(context.Background(), cacheOpts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })

	static := map[string]credentials.Static{"docker.io": {Username: hubUser, Password: hubPassword}}
	if o.withoutCreds {
		static = nil
	}
	keys, err := credentials.New(credentials.Config{Static: static})
	if err != nil {
		t.Fatal(err)
	}
	upCfg := o.upstream
	upCfg.Host, upCfg.URL = "docker.io", reg.URL()
	client, err := upstream.New(upCfg, keys, upstream.Options{Registerer: metrics, Now: clk.Now, Transport: o.transport})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	rem := o.remote
	rem.Host, rem.Upstream, rem.Visibility = "docker.io", client, client
	if o.private && !o.unexposed {
		// The private fixture is served to anonymous clients only because
		// the operator exposed it.
		rem.Expose = []string{"library/*"}
	}
	if o.tagTTL != 0 {
		rem.TagTTL = o.tagTTL
	}
	if o.staleIfError != 0 {
		rem.StaleIfError = o.staleIfError
	}
	m, err := mirror.New(mirror.Options{
		Cache:       store,
		Remotes:     []mirror.Remote{rem},
		Registerer:  metrics,
		Now:         clk.Now,
		SendTimeout: o.sendTimeout,
		MissLimits:  o.missLimits,
		Peers:       o.peers,
	})
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler = m
	if o.wrap != nil {
		h = o.wrap(m)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &env{upstream: reg, m: m, mirror: srv, store: store, clock: clk, metrics: metrics, dir: cacheOpts.Dir}
}

// pushNode publishes the test's library/node:10, a two-platform index.
func (e *env) pushNode(t *testing.T, layers int, layerSize int64) registrytest.Index {
	t.Helper()
	ix, err := e.upstream.PushIndex("library/node", "10", registrytest.ImageOptions{Layers: layers, LayerSize: layerSize, Seed: 10})
	if err != nil {
		t.Fatal(err)
	}
	e.upstream.Reset()
	return ix
}

type response struct {
	status int
	header http.Header
	body   []byte
	err    error // reading the body failed: the connection was aborted
}

// do sends an anonymous request to the mirror, as dockerd would.
func (e *env) do(t *testing.T, method, path string, header http.Header) response {
	t.Helper()
	return roundTrip(t, e.mirror, method, path, nil, header)
}

// doOnce is do on a connection of its own, which the client never sends
// the request again on. A download that fails before its first byte is
// sent aborts the connection with nothing written, and Go's client sends
// a GET again when that happens on a connection it reused: a test of the
// failure would then see the retry's answer.
func (e *env) doOnce(t *testing.T, method, path string) response {
	t.Helper()
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest(method, e.mirror.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return response{err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: data, err: err}
}

// roundTrip sends one request to srv and reads the whole answer.
func roundTrip(t *testing.T, srv *httptest.Server, method, path string, body io.Reader, header http.Header) response {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		return response{err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: data, err: err}
}

// pullIndex pulls a whole index the way dockerd does (tag HEAD, then by
// digest) and checks every byte against what the upstream holds.
func (e *env) pullIndex(t *testing.T, repo, tag string, ix registrytest.Index) {
	t.Helper()
	head := e.do(t, http.MethodHead, "/v2/"+repo+"/manifests/"+tag, nil)
	if head.status != http.StatusOK || head.header.Get("Docker-Content-Digest") != ix.Descriptor.Digest.String() {
		t.Fatalf("HEAD %s:%s = %d digest %q, want 200 %s", repo, tag, head.status, head.header.Get("Docker-Content-Digest"), ix.Descriptor.Digest)
	}
	e.expectContent(t, "/v2/"+repo+"/manifests/"+ix.Descriptor.Digest.String(), ix.Descriptor, ix.Bytes)
	for _, img := range ix.Images {
		e.expectContent(t, "/v2/"+repo+"/manifests/"+img.Manifest.Digest.String(), img.Manifest, img.ManifestBytes)
		for _, b := range img.Blobs() {
			e.expectBlob(t, repo, b)
		}
	}
}

func (e *env) expectContent(t *testing.T, path string, desc ocispec.Descriptor, want []byte) {
	t.Helper()
	got := e.do(t, http.MethodGet, path, nil)
	if got.err != nil || got.status != http.StatusOK {
		t.Fatalf("GET %s = %d, %v: %s", path, got.status, got.err, got.body)
	}
	if string(got.body) != string(want) {
		t.Fatalf("GET %s: body differs from the upstream's", path)
	}
	if ct := got.header.Get("Content-Type"); ct != desc.MediaType {
		t.Fatalf("GET %s: Content-Type %q, want %q", path, ct, desc.MediaType)
	}
	if dg := got.header.Get("Docker-Content-Digest"); dg != desc.Digest.String() {
		t.Fatalf("GET %s: Docker-Content-Digest %q, want %s", path, dg, desc.Digest)
	}
}

func (e *env) expectBlob(t *testing.T, repo string, desc ocispec.Descriptor) {
	t.Helper()
	got := e.do(t, http.MethodGet, "/v2/"+repo+"/blobs/"+desc.Digest.String(), nil)
	if got.err != nil || got.status != http.StatusOK {
		t.Fatalf("GET blob %s = %d, %v", desc.Digest, got.status, got.err)
	}
	if int64(len(got.body)) != desc.Size || sha256Digest(got.body) != desc.Digest {
		t.Fatalf("GET blob %s: got %d bytes with digest %s", desc.Digest, len(got.body), sha256Digest(got.body))
	}
}

func sha256Digest(b []byte) digest.Digest {
	sum := sha256.Sum256(b)
	return digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(sum[:]))
}
