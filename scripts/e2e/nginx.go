package e2e

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/regmirror/regmirror/internal/testnet"
)

// nginxConfig is the reverse proxy docs/operations.md recommends in front
// of regmirror, taking the backends in turn: bodies streamed both ways
// (proxy_buffering and proxy_request_buffering off, so a blob reaches the
// client as the replica sends it and a push reaches the replica as the
// client sends it), no body size limit, and the client's Host kept so the
// token realm the replicas announce points back at nginx. Its arguments are
// the directory, the listen address and the server lines.
const nginxConfig = `daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log stderr notice;
events { worker_connections 256; }
http {
	access_log off;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	upstream regmirror {
%[3]s	}
	server {
		listen %[2]s;
		client_max_body_size 0;
		location / {
			proxy_pass http://regmirror;
			proxy_http_version 1.1;
			proxy_set_header Host $http_host;
			proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
			proxy_set_header X-Forwarded-Proto $scheme;
			proxy_buffering off;
			proxy_request_buffering off;
			proxy_read_timeout 300s;
		}
	}
}
`

// StartNginx runs Debian's nginx, in a temporary directory of its own, as
// a round-robin reverse proxy in front of backends (host:port each) and
// returns its URL, http://127.0.0.1:PORT. nginx stops when the test ends;
// its log is printed if the test failed.
func StartNginx(t testing.TB, backends ...string) string {
	t.Helper()
	bin, err := lookProgram("E2E_NGINX", "nginx", "/usr/sbin/nginx")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	addr := testnet.FreeAddr(t)
	var servers strings.Builder
	for _, b := range backends {
		fmt.Fprintf(&servers, "\t\tserver %s;\n", b)
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(nginxConfig, dir, addr, servers.String())), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", conf, "-e", "stderr")
	cmd.Dir = dir
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	log := &lockedBuilder{}
	if !waitNginxListening(stderr, log) {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("nginx did not start:\n%s", log.String())
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGQUIT) // graceful shutdown
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("nginx log:\n%s", log.String())
		}
	})
	return "http://" + addr
}

// waitNginxListening copies nginx's log into log until nginx reports its
// file limit, which it does once its listening sockets are open and before
// it serves: from then on connections queue until it accepts them. The
// rest of the log is copied in the background. It reports whether that
// line came before the log ended.
func waitNginxListening(stderr io.Reader, log *lockedBuilder) bool {
	lines := bufio.NewScanner(stderr)
	for lines.Scan() {
		log.WriteLine(lines.Text())
		if strings.Contains(lines.Text(), "getrlimit(RLIMIT_NOFILE)") {
			go func() {
				for lines.Scan() {
					log.WriteLine(lines.Text())
				}
			}()
			return true
		}
	}
	return false
}

// lockedBuilder is a strings.Builder safe for concurrent use.
type lockedBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuilder) WriteLine(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.WriteString(s + "\n")
}

func (l *lockedBuilder) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
