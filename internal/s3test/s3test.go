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

// Server is a running versitygw. Its fields are set once.
type Server struct {
	// Endpoint is 127.0.0.1:PORT, plain HTTP.
	Endpoint string
	// AccessKey and SecretKey are the root user's credentials, who may do
	// anything.
	AccessKey, SecretKey string

	cmd  *exec.Cmd
	done chan struct{} // closed when versitygw has exited
	stop sync.Once
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
		done: make(chan struct{})}
	s.cmd = exec.Command(bin, "--access", s.AccessKey, "--secret", s.SecretKey, "--port", s.Endpoint,
		"--region", Region, "--health", healthPath, "--quiet", "posix", t.TempDir())
	// The root credentials are the flags': none from the environment.
	s.cmd.Env = withoutCredentials(os.Environ())
	var log bytes.Buffer
	s.cmd.Stdout, s.cmd.Stderr = &log, &log
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("starting versitygw: %v", err)
	}
	go func() { s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("versitygw output:\n%s", log.String())
		}
	})
	if err := s.waitServing(); err != nil {
		return s, fmt.Errorf("%v\nversitygw output:\n%s", err, log.String())
	}
	// Another test's server on the same port would answer the health
	// check too, but not to these credentials.
	if _, err := s.Client(t).ListBuckets(context.Background()); err != nil || s.exited() {
		return s, fmt.Errorf("versitygw on %s does not take its credentials (%v)\nversitygw output:\n%s",
			s.Endpoint, err, log.String())
	}
	return s, nil
}

// Stop stops the server and waits for it to exit; clients then find
// nothing listening on Endpoint. It is safe to call more than once.
func (s *Server) Stop() {
	s.stop.Do(func() {
		_ = s.cmd.Process.Signal(os.Interrupt)
		<-s.done
	})
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
	case <-s.done:
		return true
	default:
		return false
	}
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
		case <-s.done:
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
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, dir := range filepath.SplitList(strings.TrimSpace(string(out))) {
			if path := filepath.Join(dir, "bin", "versitygw"); isExecutable(path) {
				return path
			}
		}
	}
	if path, err := exec.LookPath("versitygw"); err == nil {
		return path
	}
	t.Fatal("versitygw is not installed: run scripts/install-deps.sh")
	return ""
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
