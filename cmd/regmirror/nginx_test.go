//go:build nginx

package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regmirror/regmirror/internal/nginxtest"
	"github.com/regmirror/regmirror/internal/registrytest"
)

// Run with: make proxy-log (installs Debian's nginx if missing).

// dockerUserAgent is what dockerd 20.10 sends, a long user agent as audits
// see them.
const dockerUserAgent = "docker/20.10.24+dfsg1 go/go1.19.8 git-commit/5d6db84 kernel/6.1.0 os/linux arch/amd64 UpstreamClient(Docker-Client/20.10.24+dfsg1 \\(linux\\))"

// nginxRequestID is the form of nginx's $request_id: 32 hex digits. The
// daemon's own IDs look different, so an ID of this form in the access
// log came from nginx.
var nginxRequestID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// Behind a real nginx that is a trusted proxy, the access log names the
// original client (127.0.0.2, not nginx's 127.0.0.1, nor what the client
// wrote into X-Forwarded-For), the user it logged in as, its user agent,
// and nginx's request ID, which the response carries back. A client that
// talks to the daemon directly and forges X-Forwarded-For and X-Request-Id
// is logged with its real address and an ID of the daemon's.
func TestAccessLogBehindNginx(t *testing.T) {
	t.Parallel()
	hub, cfg := startHub(t)
	img, err := hub.PushImage("library/node", "10", registrytest.ImageOptions{Layers: 1, Seed: 4})
	if err != nil {
		t.Fatal(err)
	}
	withUsers(t, &cfg, "alice")
	cfg.TrustedProxies = []string{"127.0.0.1"}
	logs := &waitableLog{}
	log, err := newLogger(logs, "info", "json")
	if err != nil {
		t.Fatal(err)
	}
	daemon := startDaemonLogging(t, cfg, log)
	proxy := nginxtest.Start(t, strings.TrimPrefix(daemon, "http://"))
	client := clientFrom(t, "127.0.0.2")

	// docker login and pull through the proxy: ping, token, manifest, blob.
	ping := send(t, client, http.MethodGet, proxy+"/v2/", nil)
	realm := regexp.MustCompile(`realm="([^"]+)"`).FindStringSubmatch(ping.Header.Get("WWW-Authenticate"))
	if ping.StatusCode != http.StatusUnauthorized || realm == nil || !strings.HasPrefix(realm[1], proxy+"/") {
		t.Fatalf("ping through nginx = %d, challenge %q; want 401 with a realm on %s", ping.StatusCode, ping.Header.Get("WWW-Authenticate"), proxy)
	}
	login := send(t, client, http.MethodGet, realm[1]+"?service=regmirror&scope=repository:library/node:pull",
		http.Header{"Authorization": {basicAuth("alice")}})
	var token struct{ Token string }
	if err := json.Unmarshal(login.body, &token); err != nil || login.StatusCode != http.StatusOK || token.Token == "" {
		t.Fatalf("token through nginx = %d %s", login.StatusCode, login.body)
	}
	pullHeader := http.Header{
		"Authorization": {"Bearer " + token.Token},
		// Whatever a client claims; nginx appends the address it saw.
		"X-Forwarded-For": {"6.6.6.6"},
		"X-Request-Id":    {"chosen-by-the-client"},
	}
	manifest := send(t, client, http.MethodGet, proxy+"/v2/library/node/manifests/10", pullHeader)
	blob := send(t, client, http.MethodGet, proxy+"/v2/library/node/blobs/"+img.Layers[0].Digest.String(), pullHeader)
	if manifest.StatusCode != http.StatusOK || blob.StatusCode != http.StatusOK || int64(len(blob.body)) != img.Layers[0].Size {
		t.Fatalf("pull through nginx: manifest %d, blob %d with %d bytes", manifest.StatusCode, blob.StatusCode, len(blob.body))
	}

	for _, tc := range []struct {
		name string
		resp response
		path string
	}{
		{"login", login, "/v2/token"},
		{"manifest", manifest, "/v2/library/node/manifests/10"},
		{"blob", blob, "/v2/library/node/blobs/" + img.Layers[0].Digest.String()},
	} {
		id := tc.resp.Header.Get("X-Request-Id")
		if !nginxRequestID.MatchString(id) {
			t.Errorf("%s: the response's X-Request-Id is %q, want nginx's $request_id", tc.name, id)
		}
		line := logs.accessLine(t, id)
		want := map[string]any{"client": "127.0.0.2", "user": "alice", "user_agent": dockerUserAgent, "path": tc.path, "request_id": id}
		for field, value := range want {
			if line[field] != value {
				t.Errorf("%s: access log %s = %v, want %v\nline: %v", tc.name, field, line[field], value, line)
			}
		}
	}

	// Straight to the daemon, with forged forwarding headers.
	direct := send(t, client, http.MethodGet, daemon+"/v2/library/node/manifests/10", pullHeader)
	id := direct.Header.Get("X-Request-Id")
	if direct.StatusCode != http.StatusOK || id == "" || id == "chosen-by-the-client" || nginxRequestID.MatchString(id) {
		t.Fatalf("direct pull = %d with X-Request-Id %q; want 200 with an ID of the daemon's", direct.StatusCode, id)
	}
	line := logs.accessLine(t, id)
	if line["client"] != "127.0.0.2" || line["user"] != "alice" {
		t.Errorf("direct pull forging X-Forwarded-For: logged client %v, user %v; want 127.0.0.2, alice\nline: %v", line["client"], line["user"], line)
	}
	if out := logs.String(); strings.Contains(out, "6.6.6.6") || strings.Contains(out, token.Token) || strings.Contains(out, passwordOf("alice")) {
		t.Errorf("the log holds the forged address, the token or the password:\n%s", out)
	}
}

// clientFrom returns an HTTP client whose connections come from the
// loopback address ip (Linux routes all of 127.0.0.0/8 to lo).
func clientFrom(t *testing.T, ip string) *http.Client {
	t.Helper()
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	transport := &http.Transport{DialContext: dialer.DialContext}
	t.Cleanup(transport.CloseIdleConnections)
	return &http.Client{Transport: transport, Timeout: time.Minute}
}

// response is an answer with its whole body.
type response struct {
	*http.Response
	body []byte
}

// send makes one request as dockerd would (its user agent) and reads the
// whole answer.
func send(t *testing.T, c *http.Client, method, url string, header http.Header) response {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("User-Agent", dockerUserAgent)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, url, err)
	}
	return response{Response: resp, body: body}
}

// waitableLog is a log that tests can wait on: a client may read a whole
// answer before the handler returns and writes its access line. Safe for
// concurrent use.
type waitableLog struct {
	mu      sync.Mutex
	buf     strings.Builder
	written chan struct{} // closed and replaced on every write
}

func (l *waitableLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.written != nil {
		close(l.written)
		l.written = nil
	}
	return l.buf.Write(p)
}

func (l *waitableLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// accessLine waits for the JSON access line of the request with ID id. The
// minute bounds a broken test; it is no timing claim.
func (l *waitableLog) accessLine(t *testing.T, id string) map[string]any {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		l.mu.Lock()
		log := l.buf.String()
		if l.written == nil {
			l.written = make(chan struct{})
		}
		written := l.written
		l.mu.Unlock()
		for line := range strings.SplitSeq(log, "\n") {
			var fields map[string]any
			if json.Unmarshal([]byte(line), &fields) == nil && fields["msg"] == "request" && fields["request_id"] == id {
				return fields
			}
		}
		select {
		case <-written:
		case <-deadline:
			t.Fatalf("no access line with request_id %s in the log:\n%s", id, log)
		}
	}
}
