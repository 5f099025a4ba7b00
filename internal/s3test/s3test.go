// Package s3test runs a real S3 server for tests: versitygw, serving a
// POSIX directory of the test's own on a loopback port, with root
// credentials made up for it. scripts/install-deps.sh installs versitygw
// into $(go env GOPATH)/bin; a test fails, never skips, without it.
package s3test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"go/build"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/regmirror/regmirror/internal/testnet"
)

// Region is the region the server answers for.
const Region = "us-east-1"

// healthPath answers 200 once the server serves.
const healthPath = "/health"

// Server is a running versitygw. Its exported fields are set once.
type Server struct {
	// Endpoint is 127.0.0.1:PORT, plain HTTP.
	Endpoint string
	// AccessKey and SecretKey are the root user's credentials, who may do
	// anything.
	AccessKey, SecretKey string

	bin, dir string // the program and the directory it serves

	mu   sync.Mutex // guards cmd, done and log across Stop and Restart
	cmd  *exec.Cmd
	done chan struct{} // closed when the current process has exited
	log  *bytes.Buffer // every run's output; read once the current one exited
}

// Start runs versitygw until the test ends or Stop.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := program(t)
	// The port is picked free and then handed to versitygw, so a test
	// starting another server at the same moment may take it first: this
	// one then exits, and what answered the wait may be the other one.
	// Start again on a new port when that happens.
	const attempts = 3
	for attempt := 1; ; attempt++ {
		s, err := start(t, bin)
		if err == nil {
			return s
		}
		if !s.exited() || attempt == attempts {
			t.Fatal(err)
		}
		t.Logf("versitygw exited while starting (its port taken meanwhile?), starting again: %v", err)
	}
}

// start makes one attempt of Start. The server it returns is stopped at
// the test's end, also when err is set.
func start(t testing.TB, bin string) (*Server, error) {
	s := &Server{Endpoint: testnet.FreeAddr(t), AccessKey: "root-" + randomWord(), SecretKey: randomWord() + randomWord(),
		bin: bin, dir: t.TempDir()}
	s.launch(t)
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("versitygw output:\n%s", s.output())
		}
	})
	if err := s.waitServing(); err != nil {
		return s, fmt.Errorf("%v\nversitygw output:\n%s", err, s.output())
	}
	// Another test's server on the same port would answer the health
	// check too, but not to these credentials.
	if _, err := s.Client(t).ListBuckets(context.Background()); err != nil || s.exited() {
		return s, fmt.Errorf("versitygw on %s does not take its credentials (%v)\nversitygw output:\n%s",
			s.Endpoint, err, s.output())
	}
	return s, nil
}

// launch starts versitygw on the server's endpoint and directory.
func (s *Server) launch(t testing.TB) {
	cmd := exec.Command(s.bin, "--access", s.AccessKey, "--secret", s.SecretKey, "--port", s.Endpoint,
		"--region", Region, "--health", healthPath, "--quiet", "posix", s.dir)
	// The root credentials are the flags': none from the environment.
	cmd.Env = withoutCredentials(os.Environ())
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.log == nil {
		s.log = &bytes.Buffer{}
	}
	// One log across Restart: the previous process has exited and
	// written all it will.
	cmd.Stdout, cmd.Stderr = s.log, s.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting versitygw: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	s.cmd, s.done = cmd, done
}

// Stop stops the server and waits for it to exit; clients then find
// nothing listening on Endpoint. It is safe to call more than once.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Signal(os.Interrupt)
	<-done
}

// Restart stops the server if it runs and starts it again on the same
// endpoint, with the same credentials and the same buckets and objects:
// an S3 server back from an outage.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	s.launch(t)
	if err := s.waitServing(); err != nil {
		t.Fatalf("restarting versitygw: %v\nversitygw output:\n%s", err, s.output())
	}
}

// output is what the server has written in all its runs, once the
// current one has exited.
func (s *Server) output() string {
	s.mu.Lock()
	done, log := s.done, s.log
	s.mu.Unlock()
	select {
	case <-done:
		return log.String()
	default:
		return "(still running)"
	}
}

// Client returns a client of the server with the root credentials.
func (s *Server) Client(t testing.TB) *minio.Client {
	t.Helper()
	c, err := minio.New(s.Endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Region: Region,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// NewBucket makes an empty bucket of a name no other test uses, and
// returns the name.
func (s *Server) NewBucket(t testing.TB) string {
	t.Helper()
	name := "test-" + randomWord()
	if err := s.Client(t).MakeBucket(context.Background(), name, minio.MakeBucketOptions{Region: Region}); err != nil {
		t.Fatalf("making bucket %s: %v", name, err)
	}
	return name
}

// exited reports whether versitygw has exited.
func (s *Server) exited() bool {
	select {
	case <-s.exitedChan():
		return true
	default:
		return false
	}
}

func (s *Server) exitedChan() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.done
}

// waitServing waits until the health endpoint answers 200. The time limit
// only bounds a server that hangs while starting.
func (s *Server) waitServing() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	url := "http://" + s.Endpoint + healthPath
	for {
		err := getOK(ctx, url)
		if err == nil {
			return nil
		}
		select {
		case <-s.exitedChan():
			return errors.New("versitygw exited before it served")
		case <-ctx.Done():
			return fmt.Errorf("versitygw does not serve on %s: %w", s.Endpoint, err)
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
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// program finds versitygw in $(go env GOPATH)/bin, where
// scripts/install-deps.sh puts it, or else in PATH.
func program(t testing.TB) string {
	t.Helper()
	for _, dir := range filepath.SplitList(goPath()) {
		if path := filepath.Join(dir, "bin", "versitygw"); isExecutable(path) {
			return path
		}
	}
	if path, err := exec.LookPath("versitygw"); err == nil {
		return path
	}
	t.Fatal("versitygw is not installed: run scripts/install-deps.sh")
	return ""
}

// goPath is $(go env GOPATH). A test binary may run where go is not on
// PATH (the end-to-end tests run as root in a namespace of their own);
// GOPATH then comes from the environment or defaults to $HOME/go, as go
// itself would have it.
func goPath() string {
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		return strings.TrimSpace(string(out))
	}
	return build.Default.GOPATH
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// withoutCredentials drops the variables versitygw would take root
// credentials or a listen address from.
func withoutCredentials(env []string) []string {
	var kept []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "ROOT_") || strings.HasPrefix(name, "VGW_") {
			continue
		}
		kept = append(kept, kv)
	}
	return kept
}

func randomWord() string {
	var b [8]byte
	rand.Read(b[:])
	return fmt.Sprintf("%x", b)
}
