package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/credentials"
	"github.com/regmirror/regmirror/eviction"
	"github.com/regmirror/regmirror/internal/admin"
	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/internal/testclock"
	"github.com/regmirror/regmirror/mirror"
	"github.com/regmirror/regmirror/upstream"
)

// budgetEnv is the real mirror and cache in front of an in-process upstream,
// with an Evictor the test runs pass by pass.
type budgetEnv struct {
	hub     *registrytest.Registry
	dir     string
	clock   *testclock.Clock
	budget  eviction.Config
	store   *cache.Store
	evictor *eviction.Evictor
	mirror  *httptest.Server
}

func newBudgetEnv(t *testing.T, budget eviction.Config) *budgetEnv {
	t.Helper()
	e := &budgetEnv{
		hub:    registrytest.New(t, registrytest.Options{}),
		dir:    t.TempDir(),
		clock:  testclock.New(time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)),
		budget: budget,
	}
	e.open(t)
	return e
}

// open starts the cache, the evictor and the mirror on e.dir.
func (e *budgetEnv) open(t *testing.T) {
	t.Helper()
	reg := prometheus.NewRegistry()
	store, err := cache.Open(context.Background(), cache.Options{Dir: e.dir, Now: e.clock.Now, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	keys, err := credentials.New(credentials.Config{})
	if err != nil {
		t.Fatal(err)
	}
	client, err := upstream.New(upstream.Config{Host: "docker.io", URL: e.hub.URL()}, keys, upstream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := mirror.New(mirror.Options{Cache: store, Remotes: []mirror.Remote{{Host: "docker.io", Upstream: client}},
		Registerer: reg, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := eviction.New(admin.EvictionCache{Store: store}, e.budget, eviction.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)
	e.store, e.evictor, e.mirror = store, ev, srv
}

// restart closes the cache, as a daemon stopping does, and opens it again.
func (e *budgetEnv) restart(t *testing.T) {
	t.Helper()
	e.mirror.Close()
	if err := e.store.Close(); err != nil {
		t.Fatal(err)
	}
	e.open(t)
}

// push publishes a single-platform image of layers of size bytes each.
func (e *budgetEnv) push(t *testing.T, repo string, seed uint64, layers int, size int64) registrytest.Image {
	t.Helper()
	img, err := e.hub.PushImage(repo, "1", registrytest.ImageOptions{Layers: layers, LayerSize: size, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// pull pulls repo:1 through the mirror, then lets the evictor run, as the
// daemon's loop would right after.
func (e *budgetEnv) pull(t *testing.T, repo string) {
	t.Helper()
	pullImage(t, e.mirror.URL, repo, "1")
	if _, err := e.evictor.Evict(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// pullImage does what docker pull does for a single-platform image,
// verifying every byte, and returns the bytes of the blobs.
func pullImage(t *testing.T, base, repo, tag string) (blobBytes int64) {
	t.Helper()
	data := httpGet(t, base+"/v2/"+repo+"/manifests/"+tag, registrytest.MediaTypeDockerManifest)
	var m ocispec.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	for _, desc := range append([]ocispec.Descriptor{m.Config}, m.Layers...) {
		blob := httpGet(t, base+"/v2/"+repo+"/blobs/"+desc.Digest.String(), "")
		if got := digest.FromBytes(blob); got != desc.Digest {
			t.Fatalf("blob %s arrived as %s", desc.Digest, got)
		}
		blobBytes += int64(len(blob))
	}
	return blobBytes
}

func httpGet(t *testing.T, url, accept string) []byte {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d, %v", url, resp.StatusCode, err)
	}
	return body
}

// cached counts the blobs of descs that are in the cache.
func (e *budgetEnv) cached(t *testing.T, descs []ocispec.Descriptor) (n int) {
	t.Helper()
	for _, desc := range descs {
		rc, _, err := e.store.ReadBlob(context.Background(), desc.Digest, 0)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		rc.Close()
		n++
	}
	return n
}

const layerSize = 128 << 10 // an image is two layers and a small config: about 256 KiB

func TestEvictionKeepsPullsWithinBudget(t *testing.T) {
	t.Parallel()
	const budget = 1 << 20 // room for three images between the watermarks
	e := newBudgetEnv(t, eviction.Config{MaxSize: budget})
	var imgs []registrytest.Image
	for i := range 8 {
		imgs = append(imgs, e.push(t, fmt.Sprintf("library/app%d", i), uint64(i+1), 2, layerSize))
	}
	for i := range imgs {
		e.clock.Advance(time.Minute)
		e.pull(t, fmt.Sprintf("library/app%d", i))
		if i == 3 {
			// app0 becomes the most recently used: LRU, not FIFO.
			e.clock.Advance(time.Minute)
			e.pull(t, "library/app0")
		}
		if usage := e.store.Usage(); usage > budget {
			t.Fatalf("after pulling app%d: usage %d bytes, budget %d", i, usage, budget)
		}
	}
	if n := e.cached(t, imgs[7].Blobs()); n != 3 {
		t.Errorf("the most recently pulled image has %d of 3 blobs cached", n)
	}
	if n := e.cached(t, imgs[1].Blobs()); n != 0 {
		t.Errorf("the least recently used image still has %d blobs cached", n)
	}
	if n := e.cached(t, imgs[0].Blobs()); n != 0 {
		t.Errorf("app0, used before app4..app7, still has %d blobs cached", n)
	}

	// A pull of an evicted image fetches it again: its manifest, which
	// counts against the budget too, went with its blobs.
	e.hub.Reset()
	e.pull(t, "library/app1")
	if got := e.hub.BlobGetsTotal(); got != 3 {
		t.Errorf("re-pulling an evicted image fetched %d blobs upstream, want 3", got)
	}
	if got := e.hub.ManifestGetsTotal(); got != 1 {
		t.Errorf("re-pulling an evicted image fetched %d manifests upstream, want 1", got)
	}
}

func TestEvictionOrderSurvivesRestart(t *testing.T) {
	t.Parallel()
	e := newBudgetEnv(t, eviction.Config{})
	older := e.push(t, "library/older", 1, 2, layerSize)
	newer := e.push(t, "library/newer", 2, 2, layerSize)
	e.pull(t, "library/newer")
	e.clock.Advance(time.Hour)
	e.pull(t, "library/older") // pulled second, so used more recently
	e.clock.Advance(time.Hour)
	e.pull(t, "library/newer") // and now the other way round: a hit, batched in memory
	e.restart(t)

	// A budget that fits one image: the least recently used must go.
	e.evictor, _ = eviction.New(admin.EvictionCache{Store: e.store}, eviction.Config{MaxSize: 350 << 10}, eviction.Options{})
	if _, err := e.evictor.Evict(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := e.cached(t, newer.Blobs()); n != 3 {
		t.Errorf("the most recently used image has %d of 3 blobs after a restart and an eviction", n)
	}
	// Its two layers free enough; its small config may stay.
	if n := e.cached(t, older.Layers); n != 0 {
		t.Errorf("the least recently used image kept %d layers", n)
	}
}

func TestEvictionSparesBlobStreamingToSlowClient(t *testing.T) {
	t.Parallel()
	e := newBudgetEnv(t, eviction.Config{})
	img := e.push(t, "library/big", 1, 1, 12<<20) // far more than socket buffers hold
	e.pull(t, "library/big")
	layer := img.Layers[0]

	resp, err := smallWindowClient().Get(e.mirror.URL + "/v2/library/big/blobs/" + layer.Digest.String())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// The headers are out, so the mirror holds the blob open; the client
	// reads a little, then stalls while the cache is squeezed to nothing.
	// Its small receive buffer keeps the kernel from taking the whole blob
	// off the mirror's hands meanwhile.
	head := make([]byte, 4096)
	if _, err := io.ReadFull(resp.Body, head); err != nil {
		t.Fatal(err)
	}
	squeeze, err := eviction.New(admin.EvictionCache{Store: e.store}, eviction.Config{MaxSize: 1}, eviction.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pass, err := squeeze.Evict(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if pass.Removed != 2 {
		t.Errorf("eviction removed %d blobs and manifests, want the manifest and the config, which are not being read", pass.Removed)
	}
	rest, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("the slow client's download failed: %v", err)
	}
	if got := digest.FromBytes(append(head, rest...)); got != layer.Digest {
		t.Fatalf("the slow client received %s, want %s", got, layer.Digest)
	}
}

// smallWindowClient is an HTTP client whose connections have a 64 KiB
// receive buffer, which caps the TCP window: a sender cannot hand the
// kernel more than it and its own send buffer hold.
func smallWindowClient() *http.Client {
	dialer := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var sockErr error
		err := c.Control(func(fd uintptr) {
			sockErr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 64<<10)
		})
		return errors.Join(err, sockErr)
	}}
	return &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}}
}
