//go:build e2e

package e2e_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"

	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/internal/s3test"
	"github.com/regmirror/regmirror/scripts/e2e"
)

// clusterTestTimeout bounds each cluster test's pulls and pushes: a guard
// against a hang, not a measure of speed.
const clusterTestTimeout = 5 * time.Minute

// coldClientTimeout bounds one blob GET while the bucket is down: the
// replica must answer 503 within it rather than wait on the bucket.
const coldClientTimeout = 60 * time.Second

// Eight clients pull one multi-layer image through nginx at once, cold:
// the upstream sends each blob once in all, whichever replica each client
// reached, and every client gets the upstream's bytes. Six clients are
// go-containerregistry, two are real dockerds with nginx as their
// registry mirror. Pulled again through each replica directly, the image
// costs the upstream nothing. Run without a bucket (the replicas forward
// to the digest's owner) and with the shared bucket, which must then hold
// every blob, intact.
func TestClusterColdPullFetchesEachBlobOnce(t *testing.T) {
	for _, tc := range []struct {
		name   string
		bucket bool
	}{
		{name: "owner forwarding", bucket: false},
		{name: "shared bucket", bucket: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hub := startHub(t)
			img := pushImage(t, hub, "library/node", "10", registrytest.ImageOptions{Layers: 6, LayerSize: 3 << 20, Seed: 31})
			var s3 *s3test.Server
			if tc.bucket {
				s3 = s3test.Start(t)
			}
			c := startCluster(t, hub, s3)
			dockerds := []*e2e.Dockerd{e2e.StartDockerd(t, c.proxy), e2e.StartDockerd(t, c.proxy)}
			ctx, cancel := context.WithTimeout(t.Context(), clusterTestTimeout)
			defer cancel()
			hub.Reset()

			if err := pullConcurrently(ctx, c.proxy, img, 6, dockerds); err != nil {
				t.Fatal(err)
			}
			assertBlobGets(t, hub, img, 1, "after 8 cold pulls through nginx")
			t.Logf("8 cold pulls through nginx: %d upstream blob GETs for %d blobs; tag HEAD/GET %d/%d, manifest GETs %d",
				hub.BlobGetsTotal(), len(img.Blobs()), hub.ManifestHeads("library/node", "10"),
				hub.ManifestGets("library/node", "10"), hub.ManifestGets("library/node", img.Manifest.Digest.String()))
			if s3 != nil {
				assertBucketHolds(ctx, t, c, img.Blobs())
			}

			hub.Reset()
			for _, r := range c.replicas {
				if err := pullImage(ctx, r.url, "library/node", "10", img); err != nil {
					t.Errorf("warm pull from replica %s directly: %v", r.addr, err)
				}
			}
			if reqs := hub.Requests(); len(reqs) != 0 {
				t.Errorf("warm pulls from each replica directly made %d upstream requests, want 0: %+v", len(reqs), reqs)
			}
		})
	}
}

// pullConcurrently pulls img as library/node:10 through base with n
// go-containerregistry clients and, at the same time, `docker pull node:10`
// on each dockerd, whose registry mirror is base. Every client checks what
// it got against the upstream's digests.
func pullConcurrently(ctx context.Context, base string, img registrytest.Image, n int, dockerds []*e2e.Dockerd) error {
	var clients errgroup.Group
	for i := range n {
		clients.Go(func() error {
			if err := pullImage(ctx, base, "library/node", "10", img); err != nil {
				return fmt.Errorf("client %d: %w", i, err)
			}
			return nil
		})
	}
	for i, d := range dockerds {
		clients.Go(func() error {
			if out, err := d.Docker(ctx, "pull", "node:10"); err != nil {
				return fmt.Errorf("dockerd %d: %w\n%s", i, err, out)
			}
			id, err := d.Docker(ctx, "image", "inspect", "--format", "{{.Id}}", "node:10")
			if err != nil {
				return fmt.Errorf("dockerd %d: %w", i, err)
			}
			if id != img.Config.Digest.String() {
				return fmt.Errorf("dockerd %d pulled node:10 with image ID %s, want the config digest %s", i, id, img.Config.Digest)
			}
			return nil
		})
	}
	return clients.Wait()
}

// `docker login` and `docker push` through nginx, whose round robin sends
// each request of the push to another replica, into a hosted repository;
// then a `docker pull` from each replica directly gets the pushed image:
// the same image ID (config digest) and the same manifest digest.
func TestClusterDockerPushThroughNginxPullsFromEachReplica(t *testing.T) {
	hub := startHub(t)
	s3 := s3test.Start(t)
	c := startCluster(t, hub, s3)
	ctx, cancel := context.WithTimeout(t.Context(), clusterTestTimeout)
	defer cancel()

	pusher := e2e.StartDockerd(t, c.proxy)
	proxyHost := strings.TrimPrefix(c.proxy, "http://")
	image := proxyHost + "/team/app:1"
	if out, err := pusher.DockerInput(ctx, bytes.NewReader(randomRootfs(t, 4<<20)), "import", "-", image); err != nil {
		t.Fatalf("docker import: %v\n%s", err, out)
	}
	dockerLogin(ctx, t, pusher, proxyHost)
	if out, err := pusher.Docker(ctx, "push", image); err != nil {
		t.Fatalf("docker push through nginx: %v\n%s", err, out)
	}
	pushedID := inspect(ctx, t, pusher, image, "{{.Id}}")
	pushedDigest := repoDigest(ctx, t, pusher, image, proxyHost+"/team/app")
	t.Logf("pushed %s: image ID %s, manifest %s", image, pushedID, pushedDigest)

	puller := e2e.StartDockerd(t, c.proxy)
	for _, r := range c.replicas {
		ref := r.addr + "/team/app:1"
		dockerLogin(ctx, t, puller, r.addr)
		pull(ctx, t, puller, ref)
		if id := inspect(ctx, t, puller, ref, "{{.Id}}"); id != pushedID {
			t.Errorf("%s has image ID %s, want the pushed %s", ref, id, pushedID)
		}
		if d := repoDigest(ctx, t, puller, ref, r.addr+"/team/app"); d != pushedDigest {
			t.Errorf("%s has manifest %s, want the pushed %s", ref, d, pushedDigest)
		}
		// Removing the image makes the next replica's pull fetch every
		// layer again instead of finding it in dockerd's store.
		if out, err := puller.Docker(ctx, "rmi", ref); err != nil {
			t.Fatalf("docker rmi %s: %v\n%s", ref, err, out)
		}
	}
	assertBucketHolds(ctx, t, c, nil) // whatever the push put there is intact
}

// dockerLogin logs d in to host as pushUser.
func dockerLogin(ctx context.Context, t *testing.T, d *e2e.Dockerd, host string) {
	t.Helper()
	if out, err := d.DockerInput(ctx, strings.NewReader(pushPassword+"\n"),
		"login", host, "--username", pushUser, "--password-stdin"); err != nil {
		t.Fatalf("docker login %s: %v\n%s", host, err, out)
	}
}

// repoDigest is the manifest digest dockerd recorded for ref pulled or
// pushed as repo (host/name).
func repoDigest(ctx context.Context, t *testing.T, d *e2e.Dockerd, ref, repo string) string {
	t.Helper()
	var digests []string
	if err := json.Unmarshal([]byte(inspect(ctx, t, d, ref, "{{json .RepoDigests}}")), &digests); err != nil {
		t.Fatal(err)
	}
	for _, rd := range digests {
		if name, dgst, ok := strings.Cut(rd, "@"); ok && name == repo {
			return dgst
		}
	}
	t.Fatalf("%s has no digest for %s among %v", ref, repo, digests)
	return ""
}

// randomRootfs is a root filesystem for docker import: a file of size
// random bytes, so every run pushes a layer no replica has seen.
func randomRootfs(t *testing.T, size int) []byte {
	t.Helper()
	content := make([]byte, size)
	if _, err := rand.Read(content); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "random.bin", Mode: 0o644, Size: int64(size), ModTime: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(content); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// The replica that owns a 64 MiB layer is killed with SIGKILL while it
// fills it from the upstream for four clients, the upstream's response
// held half-way so the kill lands mid-transfer. The clients, retrying
// through nginx, complete on the other replicas; the bucket comes to hold
// the layer and never holds a partial object (every object in it hashes
// to its key, at every listing); and the upstream is asked for the layer
// again at most once: two GETs in all.
func TestClusterSurvivesKillingTheFillingOwner(t *testing.T) {
	hub := startHub(t)
	img := pushImage(t, hub, "library/big", "1", registrytest.ImageOptions{Layers: 1, LayerSize: 64 << 20, Seed: 41})
	layer := img.Layers[0]
	s3 := s3test.Start(t)
	c := startCluster(t, hub, s3)
	owner := c.owner(t, layer.Digest.String())
	ctx, cancel := context.WithTimeout(t.Context(), clusterTestTimeout)
	defer cancel()
	hub.Reset()
	stall := hub.InjectFault(layer.Digest, registrytest.Fault{Kind: registrytest.Stall, Times: 1})
	defer stall.Release()

	clients := make([]*blobClient, 4)
	var pulls errgroup.Group
	for i := range clients {
		clients[i] = newBlobClient(c.proxy, "library/big", layer)
		pulls.Go(func() error { return clients[i].pull(ctx) })
	}
	select {
	case <-stall.Hit():
	case <-ctx.Done():
		t.Fatalf("the upstream was not asked for the layer: %v", ctx.Err())
	}
	waitFirstResponses(ctx, t, clients)
	fillsBeforeKill := hub.BlobGets(layer.Digest)
	owner.kill(t)
	stall.Release() // its reader is gone; nothing more is held back
	t.Logf("killed the owner %s with %d upstream GET(s) of the layer under way; clients had read %v bytes",
		owner.addr, fillsBeforeKill, clientProgress(clients))

	if err := pulls.Wait(); err != nil {
		t.Fatalf("a client did not get the layer through nginx: %v", err)
	}
	for i, bc := range clients {
		t.Logf("client %d: the layer after %d attempt(s); failures: %v", i, bc.attempts, bc.failures)
	}
	t.Logf("upstream GETs of the layer (Range): %v", layerGets(hub, layer))
	switch n := hub.BlobGets(layer.Digest); {
	case n == 1:
		t.Errorf("the upstream sent the layer once: the fill it held was not the owner's, so the kill cut no fill")
	case n > 2:
		t.Errorf("the upstream sent the layer %d times (%d before the kill), want 2: the fill the kill cut and one more", n, fillsBeforeKill)
	}
	assertBucketHolds(ctx, t, c, []ocispec.Descriptor{layer})
}

// layerGets are the Range headers of the upstream's GETs of blob ("" for
// the whole blob).
func layerGets(hub *registrytest.Registry, blob ocispec.Descriptor) []string {
	var ranges []string
	for _, r := range hub.Requests() {
		if r.Kind == registrytest.KindBlob && r.Method == http.MethodGet && r.Reference == blob.Digest.String() {
			ranges = append(ranges, fmt.Sprintf("%q", r.Range))
		}
	}
	return ranges
}

// blobClient reads one blob through a URL until it has it whole and
// verified, starting again after a failure as a client retrying does.
type blobClient struct {
	base, repo string
	blob       ocispec.Descriptor
	// read counts the bytes of the current attempt.
	read atomic.Int64
	// responded is closed once the first attempt has its response headers
	// or has failed.
	responded   chan struct{}
	respondOnce sync.Once
	// attempts and failures are written by pull, read after it returns.
	attempts int
	failures []string
}

// blobRetryPause is how long a blobClient waits before trying again.
const blobRetryPause = time.Second

func newBlobClient(base, repo string, blob ocispec.Descriptor) *blobClient {
	return &blobClient{base: base, repo: repo, blob: blob, responded: make(chan struct{})}
}

// pull tries until the blob is read whole and verified, or ctx ends.
func (bc *blobClient) pull(ctx context.Context) error {
	for {
		bc.attempts++
		err := bc.fetch(ctx)
		bc.respondOnce.Do(func() { close(bc.responded) }) // also when fetch failed before its response
		if err == nil {
			return nil
		}
		bc.failures = append(bc.failures, err.Error())
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w after %d attempts: %s", ctx.Err(), bc.attempts, strings.Join(bc.failures, "; "))
		case <-time.After(blobRetryPause):
		}
	}
}

// fetch makes one attempt: a GET of the whole blob, read and hashed.
func (bc *blobClient) fetch(ctx context.Context) error {
	bc.read.Store(0)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, bc.base+"/v2/"+bc.repo+"/blobs/"+bc.blob.Digest.String(), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	bc.respondOnce.Do(func() { close(bc.responded) })
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body)
		return fmt.Errorf("status %s", resp.Status)
	}
	digester := bc.blob.Digest.Algorithm().Digester()
	n, err := io.Copy(io.MultiWriter(digester.Hash(), counter{&bc.read}), resp.Body)
	if err != nil {
		return fmt.Errorf("body cut after %d bytes: %w", n, err)
	}
	if got := digester.Digest(); n != bc.blob.Size || got != bc.blob.Digest {
		return fmt.Errorf("%d bytes hashing to %s, want %d", n, got, bc.blob.Size)
	}
	return nil
}

// firstResponseGuard bounds the wait for the clients' first responses
// before the kill: a replica that answers only once its fill is complete
// would never answer while the upstream holds the fill, and the kill must
// land anyway.
const firstResponseGuard = 30 * time.Second

// waitFirstResponses waits until every client's first attempt has its
// response headers (or failed), or firstResponseGuard passes, so that the
// kill lands while they read.
func waitFirstResponses(ctx context.Context, t *testing.T, clients []*blobClient) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, firstResponseGuard)
	defer cancel()
	for i, bc := range clients {
		select {
		case <-bc.responded:
		case <-ctx.Done():
			t.Logf("client %d has no response yet after %v; killing the owner anyway", i, firstResponseGuard)
			return
		}
	}
}

// counter adds what is written to it to n.
type counter struct{ n *atomic.Int64 }

func (c counter) Write(p []byte) (int, error) {
	c.n.Add(int64(len(p)))
	return len(p), nil
}

// clientProgress is the bytes each client has read in its current attempt.
func clientProgress(clients []*blobClient) []int64 {
	var read []int64
	for _, bc := range clients {
		read = append(read, bc.read.Load())
	}
	return read
}

// With the bucket stopped, pulls of what each replica holds keep working
// from its local cache, without the upstream, while a blob no replica
// holds is refused with 503 within the client's timeout (coldClientTimeout,
// a guard against a replica that waits on the bucket, not a measure of
// speed). Started again on the same directory and port, the bucket takes
// the cold pull.
func TestClusterBucketOutage(t *testing.T) {
	hub := startHub(t)
	warm := pushImage(t, hub, "library/node", "10", registrytest.ImageOptions{Layers: 4, LayerSize: 2 << 20, Seed: 51})
	cold := pushImage(t, hub, "library/cold", "1", registrytest.ImageOptions{Layers: 2, LayerSize: 1 << 20, Seed: 52})
	s3 := s3test.Start(t)
	c := startCluster(t, hub, s3)
	ctx, cancel := context.WithTimeout(t.Context(), clusterTestTimeout)
	defer cancel()
	for _, r := range c.replicas {
		if err := pullImage(ctx, r.url, "library/node", "10", warm); err != nil {
			t.Fatalf("pull from replica %s with the bucket up: %v", r.addr, err)
		}
	}

	s3.Stop()
	hub.Reset()
	for _, base := range append(replicaURLs(c), c.proxy) {
		if err := pullImage(ctx, base, "library/node", "10", warm); err != nil {
			t.Errorf("warm pull from %s with the bucket down: %v", base, err)
		}
	}
	if n := hub.BlobGetsTotal(); n != 0 {
		t.Errorf("warm pulls with the bucket down made %d upstream blob GETs, want 0", n)
	}
	for _, r := range c.replicas {
		for _, b := range cold.Layers {
			assertColdMissRefused(ctx, t, r.url, "library/cold", b)
		}
	}
	t.Logf("while the bucket was down the upstream sent %d blobs", hub.BlobGetsTotal())

	hub.Reset()
	s3.Restart(t)
	start := time.Now()
	if err := pullUntilDone(ctx, c.proxy, "library/cold", "1", cold); err != nil {
		t.Fatalf("cold pull through nginx with the bucket back: %v", err)
	}
	t.Logf("cold pull with the bucket back took %v", time.Since(start).Round(time.Millisecond))
	for _, r := range c.replicas {
		if err := pullImage(ctx, r.url, "library/cold", "1", cold); err != nil {
			t.Errorf("cold image from replica %s with the bucket back: %v", r.addr, err)
		}
	}
	assertBlobGets(t, hub, cold, 1, "the cold image, with the bucket back")
	assertBucketHolds(ctx, t, c, cold.Blobs())
}

// assertColdMissRefused GETs a blob no replica holds and wants 503 within
// coldClientTimeout.
func assertColdMissRefused(ctx context.Context, t *testing.T, base, repo string, blob ocispec.Descriptor) {
	t.Helper()
	client := &http.Client{Timeout: coldClientTimeout}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v2/"+repo+"/blobs/"+blob.Digest.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		t.Errorf("cold blob %s from %s with the bucket down: %v, want 503 within %v", blob.Digest, base, err, coldClientTimeout)
		return
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("cold blob %s from %s with the bucket down: %s, want 503 Service Unavailable: %s", blob.Digest, base, resp.Status, body)
		return
	}
	t.Logf("cold blob from %s with the bucket down: 503 in %v", base, time.Since(start).Round(time.Millisecond))
}

// pullUntilDone pulls until the pull succeeds or ctx ends: after an outage
// a replica may refuse for a while (a breaker's cool-down) before it tries
// the bucket again.
func pullUntilDone(ctx context.Context, base, repo, tag string, img registrytest.Image) error {
	var errs []error
	for {
		err := pullImage(ctx, base, repo, tag, img)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
		select {
		case <-ctx.Done():
			return errors.Join(append(errs, ctx.Err())...)
		case <-time.After(blobRetryPause):
		}
	}
}

func replicaURLs(c *testCluster) []string {
	var urls []string
	for _, r := range c.replicas {
		urls = append(urls, r.url)
	}
	return urls
}

// startHub runs the upstream: Docker Hub with token auth, whose library/*
// needs the mirror's credentials.
func startHub(t *testing.T) *registrytest.Registry {
	t.Helper()
	return registrytest.New(t, registrytest.Options{Username: hubUser, Password: hubPassword, Private: []string{"library/*"}})
}

// pushImage pushes an image of opts to the upstream as repo:tag.
func pushImage(t *testing.T, hub *registrytest.Registry, repo, tag string, opts registrytest.ImageOptions) registrytest.Image {
	t.Helper()
	img, err := hub.PushImage(repo, tag, opts)
	if err != nil {
		t.Fatal(err)
	}
	return img
}
