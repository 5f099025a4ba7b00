package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/internal/testnet"
)

// ioTimeout bounds each network wait of the raw-connection tests: a safety
// net that turns a hang into a failure, never what a test measures.
const ioTimeout = 30 * time.Second

// withUsers turns hosting on with users whose password is passwordOf(user),
// and team/* as the hosted repositories.
func withUsers(t *testing.T, cfg *Config, users ...string) {
	t.Helper()
	var lines strings.Builder
	for _, u := range users {
		hash, err := bcrypt.GenerateFromPassword([]byte(passwordOf(u)), bcrypt.DefaultCost)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&lines, "%s:%s\n", u, hash)
	}
	path := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(path, []byte(lines.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Hosted.Htpasswd = path
	cfg.Hosted.Repositories = []string{"team/*"}
}

func passwordOf(user string) string { return user + "-password-4c1d" }

func basicAuth(user string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+passwordOf(user)))
}

// rawConn is a hand-written HTTP/1.1 conversation with the daemon.
type rawConn struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

// dialRaw connects to the daemon at base from a loopback address of the
// test's choice (all of 127/8 is local on Linux).
func dialRaw(t *testing.T, base, from string) *rawConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: ioTimeout}
	c, err := d.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, conn: c, r: bufio.NewReader(c)}
}

func (c *rawConn) send(raw string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, raw); err != nil {
		c.t.Fatal(err)
	}
}

// response reads the next response and its whole body, or fails with what
// went wrong (a timeout means the daemon is holding the request).
func (c *rawConn) response(method string) (*http.Response, []byte, error) {
	c.conn.SetReadDeadline(time.Now().Add(ioTimeout))
	resp, err := http.ReadResponse(c.r, &http.Request{Method: method})
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

// closedByServer reports whether the daemon closed the connection with
// nothing more to read.
func (c *rawConn) closedByServer() error {
	c.conn.SetReadDeadline(time.Now().Add(ioTimeout))
	n, err := c.r.Read(make([]byte, 1))
	var ne net.Error
	switch {
	case n > 0:
		return errors.New("the daemon sent more")
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("the daemon kept the connection open for %v", ioTimeout)
	}
	return nil
}

func ociCode(body []byte) string {
	var e struct {
		Errors []struct{ Code string } `json:"errors"`
	}
	if json.Unmarshal(body, &e) != nil || len(e.Errors) == 0 {
		return ""
	}
	return e.Errors[0].Code
}

// openFilesUnder lists the files this process has open whose path
// contains part: a blob's digest, or the uploads directory.
func openFilesUnder(t *testing.T, part string) []string {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var open []string
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.Contains(target, part) {
			open = append(open, target)
		}
	}
	return open
}

func skipWithoutProc(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("counts open files in /proc/self/fd")
	}
}

// A registry request with a path that is not canonical gets an OCI error,
// never a redirect to another repository's path.
func TestNonCanonicalPathsGetAnOCIError(t *testing.T) {
	t.Parallel()
	_, cfg := startHub(t)
	base := startDaemonLogging(t, cfg, slog.New(slog.DiscardHandler))
	paths := []struct{ name, path string }{
		{"dot-dot", "/v2/library/a/../node/manifests/latest"},
		{"empty segment", "/v2/library//node/manifests/latest"},
		{"dot", "/v2/./library/node/manifests/latest"},
		{"dot as reference", "/v2/library/node/manifests/./latest"},
		{"trailing dot-dot", "/v2/library/node/tags/list/.."},
	}
	for _, p := range paths {
		for _, method := range []string{http.MethodGet, http.MethodHead, http.MethodPut} {
			t.Run(p.name+"/"+method, func(t *testing.T) {
				t.Parallel()
				c := dialRaw(t, base, "127.0.0.1")
				body := ""
				if method == http.MethodPut {
					body = "{}"
				}
				c.send(fmt.Sprintf("%s %s HTTP/1.1\r\nHost: mirror\r\nContent-Length: %d\r\n\r\n%s", method, p.path, len(body), body))
				resp, got, err := c.response(method)
				if err != nil {
					t.Fatalf("%s %s: %v", method, p.path, err)
				}
				if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
					t.Fatalf("%s %s = %d (Location %q), want 400 and no redirect", method, p.path, resp.StatusCode, resp.Header.Get("Location"))
				}
				if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type %q, want application/json", ct)
				}
				if method != http.MethodHead && ociCode(got) != "NAME_INVALID" {
					t.Errorf("body %q, want an OCI error NAME_INVALID", got)
				}
			})
		}
	}
}

// A GET or HEAD that declares a body and never sends it is refused at
// once, without opening the blob; before, the server waited for the body
// while holding the blob file open, past every send timeout.
func TestBodyOnReadOnlyRequestIsRefusedAndHoldsNoFile(t *testing.T) {
	t.Parallel()
	skipWithoutProc(t)
	hub, cfg := startHub(t)
	img, err := hub.PushImage("library/node", "22", registrytest.ImageOptions{Layers: 1, LayerSize: 256 << 10, Seed: 71})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Connections.BodyIdleTimeout = 100 * time.Millisecond // how long the refused body is waited for
	base := startDaemonLogging(t, cfg, slog.New(slog.DiscardHandler))
	newClient(t, base).pullImage("library/node", "22", img) // the blob is on disk now
	layer := img.Layers[0].Digest

	tests := []struct {
		name    string
		method  string
		path    string
		headers string
	}{
		{"GET blob with Content-Length", http.MethodGet, "/v2/library/node/blobs/" + layer.String(), "Content-Length: 10\r\n"},
		{"HEAD blob with Content-Length", http.MethodHead, "/v2/library/node/blobs/" + layer.String(), "Content-Length: 10\r\n"},
		{"GET blob chunked", http.MethodGet, "/v2/library/node/blobs/" + layer.String(), "Transfer-Encoding: chunked\r\n"},
		{"GET manifest with Content-Length", http.MethodGet, "/v2/library/node/manifests/22", "Content-Length: 10\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := dialRaw(t, base, "127.0.0.1")
			c.send(tt.method + " " + tt.path + " HTTP/1.1\r\nHost: mirror\r\n" + tt.headers + "\r\n")
			resp, body, err := c.response(tt.method)
			switch {
			case err != nil:
				t.Errorf("no answer: %v", err)
			case resp.StatusCode != http.StatusBadRequest:
				t.Errorf("%s = %d, want 400", tt.name, resp.StatusCode)
			case tt.method != http.MethodHead && ociCode(body) != "UNSUPPORTED":
				t.Errorf("body %q, want an OCI error UNSUPPORTED", body)
			default:
				if err := c.closedByServer(); err != nil {
					t.Errorf("after the refusal: %v", err)
				}
			}
			if open := openFilesUnder(t, layer.Encoded()); len(open) > 0 {
				t.Errorf("the blob is open while the request waits for its body: %v", open)
			}
		})
	}
}

// An upload whose body stops arriving is cut off after the idle timeout,
// and the upload file is closed; before, it was held for good.
func TestStalledUploadBodyIsCutOff(t *testing.T) {
	t.Parallel()
	skipWithoutProc(t)
	_, cfg := startHub(t)
	withUsers(t, &cfg, "ci")
	cfg.Connections.BodyIdleTimeout = 100 * time.Millisecond
	base := startDaemonLogging(t, cfg, slog.New(slog.DiscardHandler))

	c := dialRaw(t, base, "127.0.0.1")
	c.send("POST /v2/team/app/blobs/uploads/ HTTP/1.1\r\nHost: mirror\r\nAuthorization: " + basicAuth("ci") + "\r\nContent-Length: 0\r\n\r\n")
	resp, body, err := c.response(http.MethodPost)
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("starting the upload: %v %v %s", resp, err, body)
	}
	location := resp.Header.Get("Location")
	c.send("PATCH " + location + " HTTP/1.1\r\nHost: mirror\r\nAuthorization: " + basicAuth("ci") +
		"\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n0123456789")

	// Whatever the daemon answers, if anything, it must end the connection.
	if resp, _, err := c.response(http.MethodPatch); err == nil {
		t.Logf("the stalled PATCH was answered %d", resp.StatusCode)
	}
	if err := c.closedByServer(); err != nil {
		t.Fatalf("stalled upload: %v", err)
	}
	if open := openFilesUnder(t, filepath.Join(cfg.DataDir, "uploads")); len(open) > 0 {
		t.Errorf("upload files still open after the connection closed: %v", open)
	}
}

// One client address may hold max_per_client connections and everybody
// together max; further connections are closed at once, counted and
// logged, while other clients are still served.
func TestConnectionCapsPerClientAndInTotal(t *testing.T) {
	t.Parallel()
	_, cfg := startHub(t)
	cfg.Connections = ConnectionsConfig{Max: 3, MaxPerClient: 2}
	cfg.MetricsListen = testnet.FreeAddr(t)
	logs := &logBuffer{}
	base := startDaemonLogging(t, cfg, slog.New(slog.NewTextHandler(logs, nil)))
	metrics := newClient(t, "http://"+cfg.MetricsListen)
	waitFor(t, metrics.base+"/healthz")

	served := func(from string) *rawConn {
		t.Helper()
		c := dialRaw(t, base, from)
		c.send("GET /v2/ HTTP/1.1\r\nHost: mirror\r\n\r\n")
		if resp, _, err := c.response(http.MethodGet); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("a connection from %s within the caps: %v, %v", from, resp, err)
		}
		return c
	}
	refused := func(from string) {
		t.Helper()
		c := dialRaw(t, base, from)
		// The daemon may have closed it already: a failed write is fine.
		_, _ = io.WriteString(c.conn, "GET /v2/ HTTP/1.1\r\nHost: mirror\r\n\r\n")
		if resp, _, err := c.response(http.MethodGet); err == nil {
			t.Fatalf("a connection from %s over a cap was answered %d", from, resp.StatusCode)
		}
	}
	served("127.0.0.1")
	served("127.0.0.1")
	refused("127.0.0.1") // its own cap
	served("127.0.0.2")  // another client still gets in
	refused("127.0.0.3") // the total cap

	m := metrics.scrape()
	if m[`regmirror_connections_refused_total{reason="client"}`] != 1 || m[`regmirror_connections_refused_total{reason="total"}`] != 1 {
		t.Errorf("refused connections: client %v, total %v; want 1 each",
			m[`regmirror_connections_refused_total{reason="client"}`], m[`regmirror_connections_refused_total{reason="total"}`])
	}
	if m["regmirror_connections_open"] != 3 {
		t.Errorf("open connections %v, want 3", m["regmirror_connections_open"])
	}
	for _, want := range []string{"client has too many connections open", "too many connections open: refusing new ones"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("no warning %q in the log:\n%s", want, logs.String())
		}
	}
}

// X-Forwarded-Proto and X-Forwarded-For count only from trusted_proxies:
// anyone else cannot make the ping's challenge send a client to another
// scheme, nor put another address in the access log.
func TestForwardedHeadersOnlyFromTrustedProxies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		trusted    []string
		xff        string
		wantScheme string
		wantClient string // the access log's client
	}{
		{"untrusted peer", nil, "203.0.113.7", "http", "127.0.0.1"},
		{"trusted proxy", []string{"127.0.0.0/8"}, "203.0.113.7", "https", "203.0.113.7"},
		{"trusted proxy, client spoofs hops", []string{"127.0.0.1"}, "198.51.100.66, 203.0.113.7", "https", "203.0.113.7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, cfg := startHub(t)
			withUsers(t, &cfg, "ci")
			cfg.TrustedProxies = tt.trusted
			logs := &logBuffer{}
			c := newClient(t, startDaemonLogging(t, cfg, slog.New(slog.NewTextHandler(logs, nil))))

			req, err := http.NewRequest(http.MethodGet, c.base+"/v2/", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("X-Forwarded-Proto", "https")
			req.Header.Set("X-Forwarded-For", tt.xff)
			resp, err := c.http.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			challenge := resp.Header.Get("Www-Authenticate")
			if !strings.Contains(challenge, `realm="`+tt.wantScheme+"://") {
				t.Errorf("challenge %q, want a realm on %s", challenge, tt.wantScheme)
			}
			// The next request on the connection is read only after the
			// ping's handler, access log included, has returned.
			c.do(http.MethodGet, "/healthz")
			line := logLine(logs.String(), "path=/v2/ ")
			if !strings.Contains(line, "client="+tt.wantClient+" ") {
				t.Errorf("access log %q, want client=%s", line, tt.wantClient)
			}
		})
	}
}

// logLine is the first line of a log that contains part.
func logLine(log, part string) string {
	for line := range strings.SplitSeq(log, "\n") {
		if strings.Contains(line, part) {
			return line
		}
	}
	return ""
}

func TestEdgeConfig(t *testing.T) {
	t.Parallel()
	runConfigCases(t, []configCase{
		{name: "defaults", yaml: "", check: func(t *testing.T, c Config) {
			if len(c.TrustedProxies) != 0 || c.Connections != (ConnectionsConfig{}) || len(c.Status.Users) != 0 {
				t.Errorf("edge settings %v %+v %+v, want none", c.TrustedProxies, c.Connections, c.Status)
			}
		}},
		{name: "all set", yaml: "trusted_proxies: [10.0.0.0/8, 192.0.2.10]\nconnections:\n  max: 100\n  max_per_client: -1\n  body_idle_timeout: 30s\n" +
			"hosted:\n  htpasswd: /etc/regmirror/htpasswd\nstatus:\n  users: [alice]\n",
			check: func(t *testing.T, c Config) {
				if want := (ConnectionsConfig{Max: 100, MaxPerClient: -1, BodyIdleTimeout: 30 * time.Second}); c.Connections != want {
					t.Errorf("connections %+v, want %+v", c.Connections, want)
				}
			}},
		{name: "proxy not a network", yaml: "trusted_proxies: [proxy.example]\n", wantErr: "trusted_proxies"},
		{name: "negative idle timeout", yaml: "connections:\n  body_idle_timeout: -1s\n", wantErr: "body_idle_timeout must not be negative"},
		{name: "status users without hosted users", yaml: "status:\n  users: [alice]\n", wantErr: "status.users: set hosted.htpasswd"},
	})
}

func TestConnectionLimitDefaults(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ configured, want int }{{0, 7}, {-1, 0}, {3, 3}} {
		if got := limit(tt.configured, 7); got != tt.want {
			t.Errorf("limit(%d, 7) = %d, want %d", tt.configured, got, tt.want)
		}
	}
}
