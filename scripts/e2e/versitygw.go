package e2e

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/internal/testnet"
)

// S3Region is the region S3Server answers for.
const S3Region = "us-east-1"

// s3HealthPath answers 200 once versitygw serves.
const s3HealthPath = "/health"

// s3StartTimeout bounds versitygw's start until its health endpoint answers.
const s3StartTimeout = 30 * time.Second

// S3Server is versitygw serving a directory of the test's own (its posix
// backend, where a bucket is a directory) on a loopback port, with root
// credentials made up for the test: the shared bucket of a cluster. Unlike
// internal/s3test's server it can be stopped and started again on the same
// directory, port and credentials, as a bucket that goes away for a while.
// Its methods are safe for concurrent use.
type S3Server struct {
	// Endpoint is 127.0.0.1:PORT, plain HTTP.
	Endpoint string
	// AccessKey and SecretKey are the root user's credentials.
	AccessKey, SecretKey string

	bin, dir, logPath string

	mu  sync.Mutex
	run *s3Run // nil while stopped
}

// s3Run is one run of versitygw.
type s3Run struct {
	cmd     *exec.Cmd
	done    chan struct{} // closed once cmd.Wait has returned
	waitErr error         // read only after done is closed
}

// StartS3Server starts versitygw in a temporary directory of its own and
// waits until it serves. It stops when the test ends; its log is printed
// if the test failed.
func StartS3Server(t testing.TB) *S3Server {
	t.Helper()
	bin, err := versitygwProgram()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s := &S3Server{
		Endpoint:  testnet.FreeAddr(t),
		AccessKey: "e2e-" + randomHex(8),
		SecretKey: randomHex(20),
		bin:       bin,
		dir:       filepath.Join(dir, "data"),
		logPath:   filepath.Join(dir, "versitygw.log"),
	}
	if err := os.Mkdir(s.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			log, _ := os.ReadFile(s.logPath)
			t.Logf("versitygw log %s:\n%s", s.logPath, log)
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), s3StartTimeout)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

// versitygwProgram finds versitygw: $E2E_VERSITYGW, else where
// scripts/install-deps.sh installs it ($(go env GOPATH)/bin), else PATH.
func versitygwProgram() (string, error) {
	candidates := []string{"versitygw", "/root/go/bin/versitygw"}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, dir := range filepath.SplitList(strings.TrimSpace(string(out))) {
			candidates = append([]string{filepath.Join(dir, "bin", "versitygw")}, candidates...)
		}
	}
	return lookProgram("E2E_VERSITYGW", candidates...)
}

// Start runs versitygw on the server's directory, port and credentials,
// and waits until it serves or ctx ends. The server must be stopped.
func (s *S3Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.run != nil {
		return errors.New("versitygw is already running")
	}
	logFile, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open versitygw log: %w", err)
	}
	defer logFile.Close() // the child holds its own descriptor
	cmd := exec.Command(s.bin, "--access", s.AccessKey, "--secret", s.SecretKey, "--port", s.Endpoint,
		"--region", S3Region, "--health", s3HealthPath, "posix", s.dir)
	cmd.Dir = filepath.Dir(s.dir)
	cmd.Env = []string{"PATH=" + systemPath(), "HOME=" + cmd.Dir} // no ROOT_* or VGW_* settings from ours
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	run := &s3Run{cmd: cmd, done: make(chan struct{})}
	go func() { run.waitErr = cmd.Wait(); close(run.done) }()
	s.run = run
	if err := s.waitServing(ctx, run); err != nil {
		return fmt.Errorf("versitygw on %s (log %s): %w", s.Endpoint, s.logPath, err)
	}
	return nil
}

// waitServing polls the health endpoint until it answers 200, versitygw
// exits, or ctx ends.
func (s *S3Server) waitServing(ctx context.Context, run *s3Run) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := getOK(ctx, "http://"+s.Endpoint+s3HealthPath)
		if err == nil {
			return nil
		}
		select {
		case <-run.done:
			return fmt.Errorf("exited before it served: %v", run.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("not serving: %w (last try: %v)", ctx.Err(), err)
		case <-tick.C:
		}
	}
}

func getOK(ctx context.Context, url string) error {
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
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// Stop stops versitygw and waits for it to exit: then nothing listens on
// Endpoint. Stopping a stopped server does nothing.
func (s *S3Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.run == nil {
		return nil
	}
	run := s.run
	s.run = nil
	if err := run.cmd.Process.Signal(os.Interrupt); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop versitygw: %w", err)
	}
	select {
	case <-run.done:
		return nil
	case <-time.After(stopTimeout):
		run.cmd.Process.Kill()
		<-run.done
		return fmt.Errorf("versitygw did not stop within %v of SIGINT; killed it", stopTimeout)
	}
}

// Client is an S3 client of the server with the root credentials.
func (s *S3Server) Client() (*minio.Client, error) {
	c, err := minio.New(s.Endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Region: S3Region,
	})
	if err != nil {
		return nil, fmt.Errorf("S3 client of %s: %w", s.Endpoint, err)
	}
	return c, nil
}

// MakeBucket creates an empty bucket.
func (s *S3Server) MakeBucket(ctx context.Context, name string) error {
	c, err := s.Client()
	if err != nil {
		return err
	}
	if err := c.MakeBucket(ctx, name, minio.MakeBucketOptions{Region: S3Region}); err != nil {
		return fmt.Errorf("make bucket %s: %w", name, err)
	}
	return nil
}

// BucketContents is what ReadContent found in a bucket.
type BucketContents struct {
	// Blobs are the sizes of the blobs under <prefix>blobs/, each read
	// whole and found to hash to the digest its key names.
	Blobs map[digest.Digest]int64
	// Manifests are the sizes of the manifests under <prefix>manifests/,
	// checked in the same way.
	Manifests map[digest.Digest]int64
	// Others are the keys of the objects that are not content (links and
	// leases, for two).
	Others []string
	// Uploads are the keys of multipart uploads neither completed nor
	// aborted: no object, but what a writer killed mid-upload leaves.
	Uploads []string
}

// Where a bucket keeps content by digest, under the prefix: blobs as
// blobs/<algorithm>/<first two hex digits>/<hex>, manifests as
// manifests/<algorithm>/<hex>.
const (
	blobsDir     = "blobs/"
	manifestsDir = "manifests/"
)

// ReadContent lists the bucket and reads every blob and manifest object
// under prefix whole. It fails on an object whose key is not a digest in
// its layout or whose bytes do not hash to it: a partial upload or a torn
// write.
func (s *S3Server) ReadContent(ctx context.Context, bucket, prefix string) (BucketContents, error) {
	c, err := s.Client()
	if err != nil {
		return BucketContents{}, err
	}
	contents := BucketContents{Blobs: map[digest.Digest]int64{}, Manifests: map[digest.Digest]int64{}}
	var bad []error
	for obj := range c.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if obj.Err != nil {
			return contents, fmt.Errorf("list bucket %s: %w", bucket, obj.Err)
		}
		dir, d, err := contentKey(strings.TrimPrefix(obj.Key, prefix))
		if dir == "" {
			contents.Others = append(contents.Others, obj.Key)
			continue
		}
		if err == nil {
			err = verifyObject(ctx, c, bucket, obj.Key, d, obj.Size)
		}
		if err != nil {
			bad = append(bad, fmt.Errorf("object %s (%d bytes): %w", obj.Key, obj.Size, err))
			continue
		}
		if dir == blobsDir {
			contents.Blobs[d] = obj.Size
		} else {
			contents.Manifests[d] = obj.Size
		}
	}
	for upload := range c.ListIncompleteUploads(ctx, bucket, prefix, true) {
		if upload.Err != nil {
			return contents, fmt.Errorf("list multipart uploads of bucket %s: %w", bucket, upload.Err)
		}
		contents.Uploads = append(contents.Uploads, upload.Key)
	}
	return contents, errors.Join(bad...)
}

// contentKey reads the digest a key (without the prefix) names under
// blobsDir or manifestsDir, and says which; dir is empty for a key under
// neither.
func contentKey(key string) (dir string, d digest.Digest, err error) {
	if rest, ok := strings.CutPrefix(key, blobsDir); ok {
		d, err := keyDigest(rest, true)
		return blobsDir, d, err
	}
	if rest, ok := strings.CutPrefix(key, manifestsDir); ok {
		d, err := keyDigest(rest, false)
		return manifestsDir, d, err
	}
	return "", "", nil
}

// keyDigest reads <algorithm>/<hex>, or <algorithm>/<xx>/<hex> with
// fanOut, as a digest.
func keyDigest(key string, fanOut bool) (digest.Digest, error) {
	parts := strings.Split(key, "/")
	if fanOut {
		if len(parts) != 3 || len(parts[1]) != 2 || !strings.HasPrefix(parts[2], parts[1]) {
			return "", errors.New("key is not <algorithm>/<xx>/<hex>")
		}
		parts = []string{parts[0], parts[2]}
	}
	if len(parts) != 2 {
		return "", errors.New("key is not <algorithm>/<hex>")
	}
	d := digest.NewDigestFromEncoded(digest.Algorithm(parts[0]), parts[1])
	if err := d.Validate(); err != nil {
		return "", fmt.Errorf("key names no digest: %w", err)
	}
	return d, nil
}

// verifyObject reads an object whole and checks its size and digest.
func verifyObject(ctx context.Context, c *minio.Client, bucket, key string, want digest.Digest, size int64) error {
	obj, err := c.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return fmt.Errorf("get: %w", err)
	}
	defer obj.Close()
	digester := want.Algorithm().Digester()
	n, err := io.Copy(digester.Hash(), obj)
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if n != size {
		return fmt.Errorf("read %d bytes, listed as %d", n, size)
	}
	if got := digester.Digest(); got != want {
		return fmt.Errorf("bytes hash to %s", got)
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return fmt.Sprintf("%x", b)
}
