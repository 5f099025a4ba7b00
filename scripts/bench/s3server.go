package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// s3Region is the region versitygw answers for and the replicas are told.
const s3Region = "us-east-1"

// s3HealthPath answers 200 once versitygw serves.
const s3HealthPath = "/health"

// s3Server is a versitygw process serving a POSIX directory of its own on
// a loopback port, with one fresh bucket and root credentials made up for
// it: the bucket the replicas of the scaleout section share.
type s3Server struct {
	cmd                  *exec.Cmd
	dir                  string // the served directory, the log and the secret
	endpoint             string // 127.0.0.1:PORT, plain HTTP
	accessKey, secretKey string
	bucket               string
	exit                 chan error // receives cmd.Wait's result once
}

// startS3Server runs versitygw (bin) in a fresh directory under workDir and
// makes its bucket.
func startS3Server(ctx context.Context, bin, workDir string) (*s3Server, error) {
	dir, err := os.MkdirTemp(workDir, "regmirror-bench-s3-")
	if err != nil {
		return nil, err
	}
	s := &s3Server{dir: dir, accessKey: "bench-" + lowerWord(), secretKey: lowerWord() + lowerWord(),
		bucket: "bench-" + lowerWord(), exit: make(chan error, 1)}
	if err := s.start(ctx, bin); err != nil {
		s.remove()
		return nil, err
	}
	return s, nil
}

func (s *s3Server) start(ctx context.Context, bin string) error {
	root := filepath.Join(s.dir, "root")
	if err := os.Mkdir(root, 0o700); err != nil {
		return err
	}
	if s.endpoint == "" {
		addr, err := freeLoopbackAddr()
		if err != nil {
			return err
		}
		s.endpoint = addr
	}
	logFile, err := os.Create(filepath.Join(s.dir, "versitygw.log"))
	if err != nil {
		return err
	}
	s.cmd = exec.Command(bin, "--access", s.accessKey, "--secret", s.secretKey, "--port", s.endpoint,
		"--region", s3Region, "--health", s3HealthPath, "--quiet", "posix", root)
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	// The root credentials are the flags': none from the environment.
	s.cmd.Env = withoutAWSCredentials(os.Environ())
	if err := s.cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("starting %s: %w", bin, err)
	}
	go func() {
		s.exit <- s.cmd.Wait()
		logFile.Close()
	}()
	if err := s.waitServing(ctx); err != nil {
		return fmt.Errorf("%w\n%s", err, s.logTail())
	}
	if err := s.makeBucket(ctx); err != nil {
		return fmt.Errorf("%w\n%s", err, s.logTail())
	}
	return nil
}

// waitServing polls the health endpoint until versitygw answers 200; the
// time limit only bounds a server that hangs while starting.
func (s *s3Server) waitServing(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	url := "http://" + s.endpoint + s3HealthPath
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-s.exit:
			s.exit <- err
			return fmt.Errorf("versitygw exited before it served: %v", err)
		case <-ctx.Done():
			return fmt.Errorf("versitygw does not serve on %s: %w", s.endpoint, ctx.Err())
		case <-tick.C:
		}
	}
}

// makeBucket creates the server's bucket. It also proves that what
// answered the health check is this server: another one on the port would
// not take these credentials.
func (s *s3Server) makeBucket(ctx context.Context) error {
	c, err := minio.New(s.endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(s.accessKey, s.secretKey, ""),
		Region: s3Region,
	})
	if err != nil {
		return fmt.Errorf("S3 client of %s: %w", s.endpoint, err)
	}
	if err := c.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{Region: s3Region}); err != nil {
		return fmt.Errorf("making bucket %s on %s: %w", s.bucket, s.endpoint, err)
	}
	return nil
}

// storageSection is the storage section of a replica sharing the bucket;
// the secret goes to a file, as an operator would keep it.
func (s *s3Server) storageSection() (string, error) {
	secretFile := filepath.Join(s.dir, "s3-secret")
	if err := os.WriteFile(secretFile, []byte(s.secretKey+"\n"), 0o600); err != nil {
		return "", err
	}
	return fmt.Sprintf("storage:\n  s3:\n    endpoint: http://%s\n    bucket: %s\n    region: %s\n"+
		"    access_key_id: %s\n    secret_access_key_file: %s\n",
		s.endpoint, s.bucket, s3Region, s.accessKey, secretFile), nil
}

func (s *s3Server) pid() int { return s.cmd.Process.Pid }

// stop shuts versitygw down (SIGINT), killing it if it lingers.
func (s *s3Server) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	if err := s.cmd.Process.Signal(os.Interrupt); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return
	}
	select {
	case err := <-s.exit:
		s.exit <- err
	case <-time.After(15 * time.Second):
		s.cmd.Process.Kill()
	}
}

// remove stops versitygw and deletes its directory with the bucket's
// objects.
func (s *s3Server) remove() {
	s.stop()
	os.RemoveAll(s.dir)
}

// logTail returns the end of versitygw's log, for error reports.
func (s *s3Server) logTail() string {
	data, _ := os.ReadFile(filepath.Join(s.dir, "versitygw.log"))
	if len(data) > 4096 {
		data = data[len(data)-4096:]
	}
	return "versitygw log (tail):\n" + string(data)
}

// findVersitygw returns the versitygw program: path when given, else the
// one scripts/install-deps.sh puts in $(go env GOPATH)/bin, else the one
// in PATH.
func findVersitygw(path string) (string, error) {
	if path != "" {
		if !isExecutable(path) {
			return "", fmt.Errorf("-versitygw %s: not an executable file", path)
		}
		return path, nil
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, dir := range filepath.SplitList(strings.TrimSpace(string(out))) {
			if p := filepath.Join(dir, "bin", "versitygw"); isExecutable(p) {
				return p, nil
			}
		}
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	return "", errors.New("versitygw, the S3 server of the scaleout section's shared bucket, is not installed: " +
		"run scripts/install-deps.sh, or pass -versitygw")
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// withoutAWSCredentials drops the AWS_ variables from env, so that
// versitygw serves with the credentials of its flags only.
func withoutAWSCredentials(env []string) []string {
	var kept []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "AWS_") {
			kept = append(kept, kv)
		}
	}
	return kept
}

// lowerWord is a random word of lower-case letters and digits, valid in a
// bucket name.
func lowerWord() string {
	return strings.ToLower(rand.Text()[:12])
}
