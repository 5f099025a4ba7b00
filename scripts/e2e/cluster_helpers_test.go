//go:build e2e

package e2e_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/crypto/bcrypt"

	"github.com/regmirror/regmirror/internal/cluster"
	"github.com/regmirror/regmirror/internal/nginxtest"
	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/internal/s3test"
	"github.com/regmirror/regmirror/internal/testnet"
	"github.com/regmirror/regmirror/scripts/e2e"
)

const (
	// replicaCount is how many replicas a test cluster has.
	replicaCount = 3
	// replicaStartTimeout bounds a replica's start until /healthz answers.
	replicaStartTimeout = 30 * time.Second
	// replicaStopTimeout is how long a replica gets to shut down after
	// SIGINT before it is killed.
	replicaStopTimeout = 20 * time.Second
	// logTail is how much of each replica's log a failed test prints.
	logTail = 24 << 10
)

// testCluster is three `regmirror serve` processes, each in a directory
// of its own, knowing each other as peers, with one cluster secret, one
// hosted token key and users, optionally one shared bucket, and nginx in
// front taking them in turn.
type testCluster struct {
	replicas []*replica
	// proxy is nginx's URL, http://127.0.0.1:PORT.
	proxy string
	// members is the membership every replica computes owners from.
	members *cluster.Peers
	// s3 serves the shared bucket, named bucket; nil without one.
	s3     *s3test.Server
	bucket string
}

// replica is one running `regmirror serve`.
type replica struct {
	addr    string // 127.0.0.1:PORT
	url     string // http://addr
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{} // closed once cmd.Wait has returned
	waitErr error         // read only after exited is closed
}

// clusterFiles are the files every replica shares, by path.
type clusterFiles struct {
	hubPassword, secret, tokenKey, htpasswd, s3Secret string
}

// startCluster starts the replicas, with a bucket of s3 when it is not
// nil (made here, as the operator would before starting them), in front of
// the upstream hub, and nginx in front of them.
func startCluster(t *testing.T, hub *registrytest.Registry, s3 *s3test.Server) *testCluster {
	t.Helper()
	c := &testCluster{s3: s3}
	if s3 != nil {
		c.bucket = s3.NewBucket(t)
	}
	files := writeClusterFiles(t, s3)
	var addrs, peers []string
	for range replicaCount {
		a := testnet.FreeAddr(t)
		addrs, peers = append(addrs, a), append(peers, "http://"+a)
	}
	members, err := cluster.New(cluster.Config{Self: peers[0], URLs: peers})
	if err != nil {
		t.Fatal(err)
	}
	c.members = members
	secrets := []string{hubPassword, pushPassword, readFile(t, files.secret), readFile(t, files.tokenKey)}
	if s3 != nil {
		secrets = append(secrets, s3.SecretKey)
	}
	for _, a := range addrs {
		config := replicaConfig(hub.URL(), a, peers, files, s3, c.bucket)
		c.replicas = append(c.replicas, startReplica(t, a, config, secrets))
	}
	c.proxy = nginxtest.Start(t, addrs...)
	return c
}

// writeClusterFiles writes the files the replicas share into a directory
// of their own: the upstream's password, the cluster secret, the hosted
// token key, the users (pushUser) and the bucket's secret key.
func writeClusterFiles(t *testing.T, s3 *s3test.Server) clusterFiles {
	t.Helper()
	dir := t.TempDir()
	hash, err := bcrypt.GenerateFromPassword([]byte(pushPassword), bcrypt.DefaultCost) // the daemon refuses cheaper hashes
	if err != nil {
		t.Fatal(err)
	}
	f := clusterFiles{
		hubPassword: filepath.Join(dir, "hub-password"),
		secret:      filepath.Join(dir, "cluster-secret"),
		tokenKey:    filepath.Join(dir, "token-key"),
		htpasswd:    filepath.Join(dir, "htpasswd"),
		s3Secret:    filepath.Join(dir, "s3-secret"),
	}
	contents := map[string]string{
		"hub-password":   hubPassword + "\n",
		"cluster-secret": randomHex(t, 32) + "\n", // as `openssl rand -hex 32` makes it
		"token-key":      randomHex(t, 32) + "\n",
		"htpasswd":       pushUser + ":" + string(hash) + "\n",
	}
	if s3 != nil {
		contents["s3-secret"] = s3.SecretKey + "\n"
	}
	writeFiles(t, dir, contents)
	return f
}

// replicaConfig is the config file of the replica listening on addr. The
// storage section is the shared bucket's, when there is one.
func replicaConfig(hubURL, addr string, peers []string, f clusterFiles, s3 *s3test.Server, bucket string) string {
	config := fmt.Sprintf(`upstreams:
  - host: docker.io
    url: %s
    username: %s
    password_file: %s
    expose: ["library/*"]
cluster:
  self: http://%s
  peers: ["%s"]
  secret_file: %s
hosted:
  htpasswd: %s
  repositories: ["team/*"]
  token_key_file: %s
`, hubURL, hubUser, f.hubPassword, addr, strings.Join(peers, `", "`), f.secret, f.htpasswd, f.tokenKey)
	if s3 != nil {
		config += fmt.Sprintf(`storage:
  s3:
    endpoint: http://%s
    bucket: %s
    region: %s
    prefix: ""
    access_key_id: %s
    secret_access_key_file: %s
    max_size: 20GiB
`, s3.Endpoint, bucket, s3test.Region, s3.AccessKey, f.s3Secret)
	}
	return config
}

// startReplica runs the daemon under test on addr with config, in a
// directory of its own, and waits until it answers /healthz. When the test
// ends it stops the replica (if still running), prints the end of its log
// if the test failed, and checks that none of secrets reached the log.
func startReplica(t *testing.T, addr, config string, secrets []string) *replica {
	t.Helper()
	bin := os.Getenv("REGMIRROR_BIN")
	if bin == "" {
		t.Fatal("REGMIRROR_BIN must name the regmirror binary under test (scripts/e2e.sh sets it)")
	}
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"config.yaml": config})
	r := &replica{addr: addr, url: "http://" + addr, logPath: filepath.Join(dir, "regmirror.log"), exited: make(chan struct{})}
	logFile, err := os.Create(r.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close() // the child holds its own descriptor
	r.cmd = exec.Command(bin, "serve", "--listen", addr, "--data-dir", filepath.Join(dir, "data"),
		"--config", filepath.Join(dir, "config.yaml"))
	r.cmd.Dir = dir
	r.cmd.Stdout, r.cmd.Stderr = logFile, logFile
	r.cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+dir) // no ambient docker credentials
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.waitErr = r.cmd.Wait(); close(r.exited) }()
	t.Cleanup(func() { r.cleanup(t, secrets) })
	if err := r.waitReady(t.Context()); err != nil {
		t.Fatalf("replica %s: %v", addr, err)
	}
	return r
}

// waitReady polls /healthz until it answers 200, the replica exits (a
// config it refuses), or replicaStartTimeout passes.
func (r *replica) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, replicaStartTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := getStatus(ctx, r.url+"/healthz", http.StatusOK)
		if err == nil {
			return nil
		}
		select {
		case <-r.exited:
			return fmt.Errorf("exited before it answered /healthz (%v); its log follows", r.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("no answer on /healthz within %v: %v", replicaStartTimeout, err)
		case <-tick.C:
		}
	}
}

// kill stops the replica with SIGKILL, as a crash or an OOM kill would,
// and waits until it is gone.
func (r *replica) kill(t *testing.T) {
	t.Helper()
	if err := r.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill -9 replica %s: %v", r.addr, err)
	}
	<-r.exited
}

func (r *replica) cleanup(t *testing.T, secrets []string) {
	select {
	case <-r.exited:
	default:
		_ = r.cmd.Process.Signal(os.Interrupt)
		select {
		case <-r.exited:
		case <-time.After(replicaStopTimeout):
			t.Errorf("replica %s did not stop within %v of SIGINT; killed it", r.addr, replicaStopTimeout)
			r.cmd.Process.Kill()
			<-r.exited
		}
	}
	log, _ := os.ReadFile(r.logPath)
	if t.Failed() {
		tail := string(log)
		if len(tail) > logTail {
			tail = "…" + tail[len(tail)-logTail:]
		}
		t.Logf("replica %s log %s, last %d KiB:\n%s", r.addr, r.logPath, logTail>>10, tail)
	}
	for _, s := range secrets {
		if strings.Contains(string(log), strings.TrimSpace(s)) {
			t.Errorf("a secret appears in replica %s's log", r.addr)
		}
	}
}

// owner is the replica that owns key (a digest) by rendezvous hashing.
func (c *testCluster) owner(t *testing.T, key string) *replica {
	t.Helper()
	url := c.members.Owner(key).URL
	for _, r := range c.replicas {
		if r.url == url {
			return r
		}
	}
	t.Fatalf("the owner of %s, %s, is not a replica", key, url)
	return nil
}

// pullImage pulls repo:tag from base (http://host:port) with
// go-containerregistry, anonymously, and checks that it is img: the
// manifest's digest, and the config and every layer read whole and
// hashed to the digests the upstream holds them under.
func pullImage(ctx context.Context, base, repo, tag string, img registrytest.Image) error {
	host := strings.TrimPrefix(base, "http://")
	ref, err := name.ParseReference(host+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		return err
	}
	desc, err := remote.Get(ref, remote.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("get manifest %s: %w", ref, err)
	}
	if desc.Digest.String() != img.Manifest.Digest.String() {
		return fmt.Errorf("%s resolved to manifest %s, want %s", ref, desc.Digest, img.Manifest.Digest)
	}
	for _, b := range img.Blobs() {
		if err := getBlob(ctx, base, repo, b.Digest, b.Size); err != nil {
			return err
		}
	}
	return nil
}

// getBlob reads a blob of repo whole from base and checks its size and
// digest: a body cut short or a wrong byte is an error.
func getBlob(ctx context.Context, base, repo string, d digest.Digest, size int64) error {
	host := strings.TrimPrefix(base, "http://")
	ref, err := name.NewDigest(host+"/"+repo+"@"+d.String(), name.Insecure)
	if err != nil {
		return err
	}
	layer, err := remote.Layer(ref, remote.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("blob %s: %w", ref, err)
	}
	body, err := layer.Compressed()
	if err != nil {
		return fmt.Errorf("get blob %s: %w", ref, err)
	}
	defer body.Close()
	digester := d.Algorithm().Digester()
	n, err := io.Copy(digester.Hash(), body)
	if err != nil {
		return fmt.Errorf("read blob %s after %d bytes: %w", ref, n, err)
	}
	if got := digester.Digest(); n != size || got != d {
		return fmt.Errorf("blob %s: %d bytes hashing to %s, want %d bytes", ref, n, got, size)
	}
	return nil
}

// getStatus GETs url and fails unless it answers want.
func getStatus(ctx context.Context, url string, want int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != want {
		return fmt.Errorf("GET %s: %s, want %d", url, resp.Status, want)
	}
	return nil
}

// assertBlobGets checks that the upstream sent each blob of img want times.
func assertBlobGets(t *testing.T, hub *registrytest.Registry, img registrytest.Image, want int, when string) {
	t.Helper()
	for _, b := range img.Blobs() {
		if n := hub.BlobGets(b.Digest); n != want {
			t.Errorf("%s: the upstream sent blob %s %d times, want %d", when, b.Digest, n, want)
		}
	}
}

// bucketCopyGuard bounds the wait for blobs the clients already have to
// reach the bucket: a download copies its blob there after serving it, and
// one that took over a dead replica's lease first waits for the lease to
// expire. A guard against a copy that never comes, not a measure of speed.
const bucketCopyGuard = 2 * time.Minute

// bucketPollPause is how long assertBucketHolds waits between listings.
const bucketPollPause = 500 * time.Millisecond

// assertBucketHolds lists the cluster's bucket until blobs are all in it,
// each of the right size, or bucketCopyGuard passes. Every listing reads
// every blob object in the bucket and checks it against its digest: a
// damaged or partial object at any time fails the test.
func assertBucketHolds(ctx context.Context, t *testing.T, c *testCluster, blobs []ocispec.Descriptor) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, bucketCopyGuard)
	defer cancel()
	client := c.s3.Client(t)
	for {
		contents, err := e2e.ReadContent(ctx, client, c.bucket, "")
		if err != nil && ctx.Err() == nil {
			t.Errorf("the bucket holds a damaged object: %v", err)
			logBucket(t, contents)
			return
		}
		missing := missingBlobs(contents, blobs)
		if len(missing) == 0 {
			logBucket(t, contents)
			return
		}
		select {
		case <-ctx.Done():
			t.Errorf("after %v the bucket still lacks %d blobs (or holds them at another size): %v", bucketCopyGuard, len(missing), missing)
			logBucket(t, contents)
			return
		case <-time.After(bucketPollPause):
		}
	}
}

// missingBlobs are the blobs that contents lacks or holds at another size.
func missingBlobs(contents e2e.BucketContents, blobs []ocispec.Descriptor) []string {
	var missing []string
	for _, b := range blobs {
		if size, ok := contents.Blobs[b.Digest]; !ok || size != b.Size {
			missing = append(missing, fmt.Sprintf("%s (%d bytes, present %v, want %d)", b.Digest, size, ok, b.Size))
		}
	}
	return missing
}

// logBucket logs what ReadContent found: the verified content, the other
// objects counted by their first key segment (links/, leases/...), and the
// unfinished multipart uploads.
func logBucket(t *testing.T, contents e2e.BucketContents) {
	t.Helper()
	others := map[string]int{}
	for _, key := range contents.Others {
		first, _, _ := strings.Cut(key, "/")
		others[first]++
	}
	t.Logf("the bucket holds %d verified blobs and %d verified manifests, other objects by prefix %v, unfinished multipart uploads %v",
		len(contents.Blobs), len(contents.Manifests), others, contents.Uploads)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
