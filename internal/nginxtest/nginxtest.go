// Package nginxtest runs Debian's nginx for tests: a round-robin reverse
// proxy on a loopback port in front of the test's backends, configured as
// docs/operations.md recommends, in a temporary directory of its own.
// scripts/install-deps.sh installs nginx; a test fails, never skips,
// without it.
package nginxtest

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/regmirror/regmirror/internal/testnet"
)

// config is the reverse proxy docs/operations.md recommends in front of
// regmirror: bodies streamed both ways (proxy_buffering and
// proxy_request_buffering off, so a blob reaches the client as the backend
// sends it and a push reaches the backend as the client sends it), no body
// size limit, the client's Host kept so the token realm the backends
// announce points back at nginx, and nginx's $request_id passed on. The
// read timeout is longer than nginx's 60s default so that a slow cold blob
// fails on the test's own guards rather than nginx's. Its arguments are
// the directory, the listen address and the upstream's server lines.
const config = `daemon off;
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
			proxy_set_header X-Request-Id $request_id;
			proxy_buffering off;
			proxy_request_buffering off;
			proxy_read_timeout 300s;
		}
	}
}
`

// Start runs nginx in front of backends (host:port each, taken in turn)
// and returns its URL, http://127.0.0.1:PORT, once it listens. nginx stops
// when the test ends; its log is printed if the test failed.
func Start(t testing.TB, backends ...string) string {
	t.Helper()
	bin := program(t)
	dir := t.TempDir()
	addr := testnet.FreeAddr(t)
	var servers strings.Builder
	for _, b := range backends {
		fmt.Fprintf(&servers, "\t\tserver %s;\n", b)
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(config, dir, addr, servers.String())), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", conf, "-e", "stderr")
	cmd.Dir = dir
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting nginx: %v", err)
	}
	// nginx reports its file limit once it has opened its listening
	// sockets and before it serves: from then on connections queue until
	// it accepts them, so nothing has to retry.
	var log strings.Builder
	lines := bufio.NewScanner(stderr)
	listening := false
	for !listening && lines.Scan() {
		log.WriteString(lines.Text() + "\n")
		listening = strings.Contains(lines.Text(), "getrlimit(RLIMIT_NOFILE)")
	}
	drained := make(chan struct{})
	go func() {
		for lines.Scan() {
			log.WriteString(lines.Text() + "\n")
		}
		close(drained)
	}()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGQUIT) // graceful shutdown
		<-drained                               // the log is whole before Wait closes the pipe
		_ = cmd.Wait()
	}
	if !listening {
		stop()
		t.Fatalf("nginx did not start:\n%s", log.String())
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("nginx's log:\n%s", log.String())
		}
	})
	return "http://" + addr
}

// program finds nginx on PATH, or where Debian's package puts it.
func program(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"nginx", "/usr/sbin/nginx"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	t.Fatal("nginx is not installed: run scripts/install-deps.sh")
	return ""
}
