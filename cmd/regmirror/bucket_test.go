package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmirror/regmirror/cache/s3blobs"
	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/internal/s3test"
)

// bucketEnv is an upstream, a bucket on a real S3 server, and replicas
// of regmirror sharing the bucket.
type bucketEnv struct {
	hub      *registrytest.Registry
	s3       *s3test.Server
	bucket   string
	replicas []string // base URLs
}

// startBucketReplicas runs n replicas sharing one bucket. With agree,
// each knows all the others as peers; without, each believes it is alone
// in its cluster, as replicas do while their membership disagrees.
func startBucketReplicas(t *testing.T, n int, agree bool, more ...UpstreamConfig) *bucketEnv {
	t.Helper()
	s3 := s3test.Start(t)
	return startBucketReplicasVia(t, s3, s3.Endpoint, n, agree, more...)
}

// startBucketReplicasVia is startBucketReplicas with the replicas
// reaching s3 at endpoint (host:port), through a proxy say.
func startBucketReplicasVia(t *testing.T, s3 *s3test.Server, endpoint string, n int, agree bool, more ...UpstreamConfig) *bucketEnv {
	t.Helper()
	e := &bucketEnv{hub: registrytest.New(t, registrytest.Options{Username: "bot", Password: "hub-secret-password"}),
		s3: s3}
	e.bucket = e.s3.NewBucket(t)
	secret := writeClusterSecret(t, clusterSecret)
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		e.replicas = append(e.replicas, "http://"+ln.Addr().String())
	}
	for i, ln := range lns {
		peers := e.replicas
		if !agree {
			peers = []string{e.replicas[i]}
		}
		cfg := Config{DataDir: t.TempDir(),
			Upstreams: append([]UpstreamConfig{{Host: "docker.io", URL: e.hub.URL(), Username: "bot", Password: "hub-secret-password"}}, more...),
			Cluster:   ClusterConfig{Self: e.replicas[i], Peers: peers, SecretFile: secret},
			Storage: StorageConfig{S3: &S3Config{Endpoint: "http://" + endpoint, Bucket: e.bucket, Region: s3test.Region,
				AccessKeyID: e.s3.AccessKey, SecretAccessKey: e.s3.SecretKey}},
		}.withDefaults()
		if err := cfg.validate(); err != nil {
			t.Fatal(err)
		}
		_, stop := startDaemonOn(t, ln, cfg, t.Output())
		t.Cleanup(func() {
			if err := stop(); err != nil {
				t.Errorf("replica %s: %v", e.replicas[i], err)
			}
		})
		waitFor(t, e.replicas[i]+"/healthz")
	}
	return e
}

// pushImage pushes library/<name>:1 to the upstream and forgets the
// requests that took.
func (e *bucketEnv) pushImage(t *testing.T, name string, opts registrytest.ImageOptions) registrytest.Image {
	t.Helper()
	img, err := e.hub.PushImage("library/"+name, "1", opts)
	if err != nil {
		t.Fatal(err)
	}
	e.hub.Reset()
	return img
}

// blobGets counts the upstream GETs of each blob of img, by digest.
func (e *bucketEnv) blobGets(img registrytest.Image) map[digest.Digest]int {
	gets := map[digest.Digest]int{}
	for _, b := range img.Blobs() {
		gets[b.Digest] = e.hub.BlobGets(b.Digest)
	}
	return gets
}

// checkBucketHoldsVerified checks that the bucket holds every blob of
// img, each whole and hashing to its digest.
func (e *bucketEnv) checkBucketHoldsVerified(t *testing.T, img registrytest.Image) {
	t.Helper()
	store, err := s3blobs.New(context.Background(), s3blobs.Options{Endpoint: "http://" + e.s3.Endpoint, Bucket: e.bucket,
		Region: s3test.Region, AccessKeyID: e.s3.AccessKey, SecretAccessKey: e.s3.SecretKey, SpoolDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range img.Blobs() {
		f, err := store.Open(context.Background(), b.Digest)
		if err != nil {
			t.Errorf("bucket: blob %s: %v", b.Digest, err)
			continue
		}
		got, err := digest.FromReader(f)
		f.Close()
		if err != nil || got != b.Digest {
			t.Errorf("bucket: blob %s hashes to %s (%v)", b.Digest, got, err)
		}
	}
}

// pull does what docker pull does for library/<name>:1 through base,
// verifying every byte.
func pull(ctx context.Context, base, name string) error {
	repo := base + "/v2/library/" + name
	data, err := get(ctx, repo+"/manifests/1", registrytest.MediaTypeDockerManifest)
	if err != nil {
		return err
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return fmt.Errorf("manifest of %s: %w", name, err)
	}
	for _, desc := range append([]ocispec.Descriptor{m.Config}, m.Layers...) {
		blob, err := get(ctx, repo+"/blobs/"+desc.Digest.String(), "")
		if err != nil {
			return err
		}
		if got := digest.FromBytes(blob); got != desc.Digest {
			return fmt.Errorf("blob %s arrived as %s", desc.Digest, got)
		}
	}
	return nil
}

// statusError is a non-200 answer, with its body.
type statusError struct {
	status int
	body   string
}

func (e *statusError) Error() string { return fmt.Sprintf("status %d: %s", e.status, e.body) }

func get(ctx context.Context, url, accept string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %w", url, &statusError{resp.StatusCode, string(body)})
	}
	return body, nil
}

// pullEverywhere pulls name through every base at once and fails the
// test with the errors.
func pullEverywhere(t *testing.T, bases []string, name string) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(bases))
	for i, base := range bases {
		wg.Go(func() { errs[i] = pull(t.Context(), base, name) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("pull through %s: %v", bases[i], err)
		}
	}
}

// Replicas sharing a bucket: a blob one replica fetched is read by the
// others from the bucket, and is there whole. Each replica here knows
// no peer, so that only the bucket can spare the upstream.
func TestBucketReplicasShareWhatOneFetched(t *testing.T) {
	t.Parallel()
	e := startBucketReplicas(t, 3, false)
	img := e.pushImage(t, "node", registrytest.ImageOptions{Layers: 3, LayerSize: 256 << 10, Seed: 31})
	if err := pull(t.Context(), e.replicas[0], "node"); err != nil {
		t.Fatal(err)
	}
	e.checkBucketHoldsVerified(t, img)
	blobs, manifests := e.hub.BlobGetsTotal(), e.hub.ManifestGetsTotal()
	for _, r := range e.replicas[1:] {
		if err := pull(t.Context(), r, "node"); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.hub.BlobGetsTotal() - blobs; got != 0 {
		t.Errorf("pulls through the other replicas made %d upstream blob GETs, want 0", got)
	}
	// Each replica revalidates the tag (it owns every tag here), with a
	// HEAD, and reads the manifest from the bucket.
	if got := e.hub.ManifestGetsTotal() - manifests; got != 0 {
		t.Errorf("pulls through the other replicas made %d upstream manifest GETs, want 0", got)
	}
	for d, n := range e.blobGets(img) {
		if n != 1 {
			t.Errorf("blob %s: %d upstream GETs, want 1", d, n)
		}
	}
}

// Replicas whose memberships disagree (each thinks it owns every digest)
// still fetch each blob from the upstream once: the fill lease in the
// bucket lets one download at a time ask the upstream, and the others
// read from it or from the bucket.
func TestBucketLeaseKeepsDisagreeingReplicasToOneFetch(t *testing.T) {
	t.Parallel()
	e := startBucketReplicas(t, 3, false)
	img := e.pushImage(t, "node", registrytest.ImageOptions{Layers: 2, LayerSize: 2 << 20, Seed: 32})
	// Slow enough that the three downloads overlap.
	e.hub.SetThrottle(8 << 20)
	bases := append(append([]string{}, e.replicas...), e.replicas...)
	pullEverywhere(t, bases, "node")
	for d, n := range e.blobGets(img) {
		if n != 1 {
			t.Errorf("blob %s: %d upstream GETs across the replicas, want 1", d, n)
		}
	}
	e.checkBucketHoldsVerified(t, img)
}

// With the bucket down, a replica serves what its local cache holds and
// answers a miss 503 at once, without asking the upstream; with the
// bucket back, misses are fetched again.
func TestBucketDownServesTheLocalCacheAndRefusesMisses(t *testing.T) {
	t.Parallel()
	e := startBucketReplicas(t, 1, true)
	e.pushImage(t, "warm", registrytest.ImageOptions{Layers: 2, LayerSize: 64 << 10, Seed: 33})
	cold := e.pushImage(t, "cold", registrytest.ImageOptions{Layers: 2, LayerSize: 64 << 10, Seed: 34})
	base := e.replicas[0]
	if err := pull(t.Context(), base, "warm"); err != nil {
		t.Fatal(err)
	}

	e.s3.Stop()
	if err := pull(t.Context(), base, "warm"); err != nil {
		t.Errorf("warm pull with the bucket down: %v", err)
	}
	before := e.hub.BlobGetsTotal()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute) // a guard, not a measure
	defer cancel()
	start := time.Now()
	_, err := get(ctx, base+"/v2/library/cold/blobs/"+cold.Layers[0].Digest.String(), "")
	var se *statusError
	if !errors.As(err, &se) || se.status != http.StatusServiceUnavailable || !strings.Contains(se.body, `"UNAVAILABLE"`) {
		t.Fatalf("cold blob with the bucket down: %v; want 503 UNAVAILABLE", err)
	}
	t.Logf("cold blob with the bucket down: 503 after %s", time.Since(start).Round(time.Millisecond))
	if got := e.hub.BlobGetsTotal() - before; got != 0 {
		t.Errorf("a miss with the bucket down made %d upstream blob GETs, want 0", got)
	}

	e.s3.Restart(t)
	if err := pull(t.Context(), base, "cold"); err != nil {
		t.Errorf("cold pull with the bucket back: %v", err)
	}
	e.checkBucketHoldsVerified(t, cold)
}

// A blob damaged in the bucket (or written there by hand) is never served:
// the pull that reads it fails, the object is removed, and the next pull
// fetches the blob from the upstream again.
func TestBucketCorruptBlobIsRefusedAndRemoved(t *testing.T) {
	t.Parallel()
	e := startBucketReplicas(t, 2, false)
	img := e.pushImage(t, "node", registrytest.ImageOptions{Layers: 1, LayerSize: 256 << 10, Seed: 35})
	if err := pull(t.Context(), e.replicas[0], "node"); err != nil {
		t.Fatal(err)
	}
	layer := img.Layers[0].Digest
	store, err := s3blobs.New(t.Context(), s3blobs.Options{Endpoint: "http://" + e.s3.Endpoint, Bucket: e.bucket,
		Region: s3test.Region, AccessKeyID: e.s3.AccessKey, SecretAccessKey: e.s3.SecretKey, SpoolDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	evil := bytes.Repeat([]byte("x"), 256<<10)
	w, err := store.Create(t.Context(), layer)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(evil)
	if err := w.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	w.Close()

	url := e.replicas[1] + "/v2/library/node/blobs/" + layer.String()
	body, err := get(t.Context(), url, "")
	if err == nil && digest.FromBytes(body) != layer {
		t.Fatalf("the replica served %d bytes that are not blob %s", len(body), layer)
	}
	if err == nil {
		t.Fatal("the replica served the blob: the corrupt copy was not read, the test proves nothing")
	}
	if _, err := store.Stat(t.Context(), layer); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the corrupt object is still in the bucket: %v", err)
	}
	body, err = get(t.Context(), url, "")
	if err != nil || digest.FromBytes(body) != layer {
		t.Fatalf("pull after the removal: %v", err)
	}
	if n := e.hub.BlobGets(layer); n != 2 {
		t.Errorf("%d upstream GETs of the layer; want 2: the first fill, and one after the corrupt copy", n)
	}
}

// metricsOf scrapes base's /metrics.
func metricsOf(t *testing.T, base string) metricValues {
	t.Helper()
	body, err := get(t.Context(), base+"/metrics", "")
	if err != nil {
		t.Fatal(err)
	}
	values, err := parseMetrics(string(body))
	if err != nil {
		t.Fatal(err)
	}
	return values
}

// settled waits until no replica has a download in flight: a download's
// copy to the bucket ends after its clients have every byte.
func (e *bucketEnv) settled(t *testing.T) {
	t.Helper()
	guard := time.Now().Add(time.Minute)
	for {
		busy := 0.0
		for _, r := range e.replicas {
			busy += metricsOf(t, r)["regmirror_cache_downloads_in_flight"]
		}
		if busy == 0 {
			return
		}
		if time.Now().After(guard) {
			t.Fatalf("%v downloads still in flight after a minute", busy)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Replicas that agree on the members, pulled through at once: the owner
// of each blob fetches it and uploads it to the bucket; the replicas
// that kept a copy from it upload nothing.
func TestBucketEachBlobIsUploadedOnce(t *testing.T) {
	t.Parallel()
	e := startBucketReplicas(t, 3, true)
	img := e.pushImage(t, "node", registrytest.ImageOptions{Layers: 3, LayerSize: 1 << 20, Seed: 36})
	pullEverywhere(t, e.replicas, "node")
	e.settled(t)
	uploads := 0.0
	for _, r := range e.replicas {
		uploads += metricsOf(t, r)["regmirror_bucket_uploaded_blobs_total"]
	}
	if want := float64(len(img.Blobs())); uploads != want {
		t.Errorf("%v blobs uploaded to the bucket across the replicas; want %v, one per blob", uploads, want)
	}
	for d, n := range e.blobGets(img) {
		if n != 1 {
			t.Errorf("blob %s: %d upstream GETs, want 1", d, n)
		}
	}
	e.checkBucketHoldsVerified(t, img)
}

// A blob's download for one repository never waits on a download of the
// same digest for another repository: that one may come from another
// registry (a slow one, or a hostile one that trickles its bytes), and
// the bucket serves nothing to a repository whose upstream was not
// asked anyway. Here ghcr.io sends the layer at a crawl while docker.io
// has it too.
func TestBucketLeaseOfOneRepositoryDoesNotBlockAnother(t *testing.T) {
	t.Parallel()
	slow := registrytest.New(t, registrytest.Options{})
	e := startBucketReplicas(t, 1, true, UpstreamConfig{Host: "ghcr.io", URL: slow.URL()})
	opts := registrytest.ImageOptions{Layers: 1, LayerSize: 4 << 20, Seed: 36}
	img := e.pushImage(t, "node", opts)
	slowImg, err := slow.PushImage("library/node", "1", opts)
	if err != nil {
		t.Fatal(err)
	}
	layer := img.Layers[0].Digest
	if slowImg.Layers[0].Digest != layer {
		t.Fatalf("the two registries' layers differ: %s and %s", slowImg.Layers[0].Digest, layer)
	}
	slow.SetThrottle(16 << 10) // 256 seconds for the layer
	crawl, stopCrawl := context.WithCancel(t.Context())
	defer func() {
		stopCrawl()
		slow.SetThrottle(0)
	}()
	base := e.replicas[0]
	go get(crawl, base+"/v2/ghcr.io/library/node/blobs/"+layer.String(), "")
	for slow.BlobGets(layer) == 0 {
		time.Sleep(10 * time.Millisecond) // the crawling download has taken the lease
	}

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute) // a guard, not a measure
	defer cancel()
	body, err := get(ctx, base+"/v2/library/node/blobs/"+layer.String(), "")
	if err != nil || digest.FromBytes(body) != layer {
		t.Fatalf("docker.io's layer while ghcr.io's download of the same digest crawls: %v", err)
	}
	if n := e.hub.BlobGets(layer); n != 1 {
		t.Errorf("%d GETs of the layer from docker.io; want 1", n)
	}
}

// hangingProxy passes TCP connections to an S3 server until hang is
// called; from then on it cuts the connections it passed and accepts new
// ones without ever answering, as a bucket behind a partitioned network
// or a stuck load balancer does.
type hangingProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	hung  bool
	conns []net.Conn
}

func startHangingProxy(t *testing.T, target string) *hangingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &hangingProxy{ln: ln, target: target}
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			c.Close()
		}
	})
	go p.serve()
	return p
}

func (p *hangingProxy) addr() string { return p.ln.Addr().String() }

func (p *hangingProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.conns = append(p.conns, c)
		hung := p.hung
		p.mu.Unlock()
		if hung {
			continue // held open, never answered, closed at the end
		}
		go p.pass(c)
	}
}

func (p *hangingProxy) pass(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, up)
	p.mu.Unlock()
	go io.Copy(up, c)
	io.Copy(c, up)
	c.Close()
	up.Close()
}

func (p *hangingProxy) hang() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hung = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// A bucket that accepts connections but never answers is a bucket down,
// not a slow one: a miss is answered 503 within the replica's bounds on
// the bucket's lookups, not after minio's minute-long waits per try,
// and the upstream is not asked.
func TestBucketHungAnswersMissesWithUnavailable(t *testing.T) {
	t.Parallel()
	s3 := s3test.Start(t)
	proxy := startHangingProxy(t, s3.Endpoint)
	e := startBucketReplicasVia(t, s3, proxy.addr(), 1, true)
	cold := e.pushImage(t, "cold", registrytest.ImageOptions{Layers: 1, LayerSize: 64 << 10, Seed: 37})

	proxy.hang()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute) // a guard, not a measure
	defer cancel()
	start := time.Now()
	_, err := get(ctx, e.replicas[0]+"/v2/library/cold/blobs/"+cold.Layers[0].Digest.String(), "")
	var se *statusError
	if !errors.As(err, &se) || se.status != http.StatusServiceUnavailable || !strings.Contains(se.body, `"UNAVAILABLE"`) {
		t.Fatalf("cold blob with the bucket hung: %v; want 503 UNAVAILABLE", err)
	}
	t.Logf("cold blob with the bucket hung: 503 after %s", time.Since(start).Round(time.Millisecond))
	if got := e.hub.BlobGetsTotal(); got != 0 {
		t.Errorf("a miss with the bucket hung made %d upstream blob GETs, want 0", got)
	}
}
