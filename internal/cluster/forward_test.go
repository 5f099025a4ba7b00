package cluster_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/internal/cluster"
)

var (
	oldSecret = cluster.Secrets{Current: []byte("old-secret-0123456789abcdef0123456789")}
	newSecret = cluster.Secrets{Current: []byte("new-secret-0123456789abcdef0123456789")}
)

// replica is one regmirror of a test cluster, reduced to the peer layer:
// a real HTTP server behind Verify that serves blobs and manifests from
// memory, or forwards them on when told to.
type replica struct {
	peers *cluster.Peers
	auth  *cluster.Authenticator
	fwd   *cluster.Forwarder
	url   string

	reached atomic.Int64 // requests that reached the server
	served  atomic.Int64 // requests that passed Verify

	// forwardTo, when set, makes the handler forward rather than serve.
	forwardTo  atomic.Pointer[cluster.Peer]
	forwardErr chan error
	// stall makes the handler send nothing until the client gives up.
	stall atomic.Bool
	// redirectTo, when set, makes the handler redirect there.
	redirectTo atomic.Pointer[string]

	mu      sync.Mutex
	content map[string][]byte // by the last path segment: digest or tag
	seen    http.Header       // the headers of the last request served
	answer  http.Header       // headers added to every answer
}

// startCluster starts one replica per secret, all knowing each other.
func startCluster(t *testing.T, secrets ...cluster.Secrets) []*replica {
	t.Helper()
	servers, urls := unstartedServers(len(secrets))
	replicas := make([]*replica, len(secrets))
	for i, s := range secrets {
		rp := &replica{url: urls[i], content: map[string][]byte{}, forwardErr: make(chan error, 1)}
		var err error
		if rp.peers, err = cluster.New(cluster.Config{Self: urls[i], URLs: urls}); err != nil {
			t.Fatal(err)
		}
		if rp.auth, err = cluster.NewAuthenticator(cluster.AuthConfig{Secrets: s}); err != nil {
			t.Fatal(err)
		}
		rp.fwd = cluster.NewForwarder(rp.peers, rp.auth, cluster.ForwarderConfig{})
		servers[i].Config.Handler = rp.handler()
		servers[i].Start()
		t.Cleanup(servers[i].Close)
		t.Cleanup(rp.fwd.CloseIdleConnections)
		replicas[i] = rp
	}
	return replicas
}

func (rp *replica) peer() cluster.Peer { return cluster.Peer{URL: rp.url} }

func (rp *replica) put(key string, body []byte) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	rp.content[key] = body
}

// setAnswerHeaders makes the replica add h to every answer.
func (rp *replica) setAnswerHeaders(h http.Header) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	rp.answer = h
}

func (rp *replica) lastHeaders() http.Header {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	return rp.seen
}

func (rp *replica) handler() http.Handler {
	verified := rp.auth.Verify(http.HandlerFunc(rp.serve))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rp.reached.Add(1)
		verified.ServeHTTP(w, r)
	})
}

func (rp *replica) serve(w http.ResponseWriter, r *http.Request) {
	rp.served.Add(1)
	rp.mu.Lock()
	rp.seen = r.Header.Clone()
	body, ok := rp.content[r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]]
	answer := rp.answer
	rp.mu.Unlock()
	if to := rp.forwardTo.Load(); to != nil {
		rp.forwardOn(w, r, *to)
		return
	}
	if to := rp.redirectTo.Load(); to != nil {
		http.Redirect(w, r, *to+r.URL.Path, http.StatusTemporaryRedirect)
		return
	}
	if rp.stall.Load() {
		<-r.Context().Done()
		return
	}
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	for k, v := range answer {
		w.Header()[k] = v
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}

// forwardOn is what a replica that believes another owns the content
// would do; a loop answers 508.
func (rp *replica) forwardOn(w http.ResponseWriter, r *http.Request, to cluster.Peer) {
	resp, err := rp.fwd.Forward(r.Context(), to, r)
	rp.forwardErr <- err
	if err != nil {
		http.Error(w, err.Error(), http.StatusLoopDetected)
		return
	}
	defer resp.Body.Close()
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

// clientRequest is a client's request as a replica's server receives it,
// with the client's credentials.
func clientRequest(method, path string) *http.Request {
	r := httptest.NewRequest(method, path, nil)
	r.Header.Set("Authorization", "Bearer client-token")
	r.Header.Set("Cookie", "session=client")
	return r
}

func randomBlob(size int) []byte {
	b := make([]byte, size)
	_, _ = rand.NewChaCha8([32]byte{7}).Read(b)
	return b
}

func TestForwardStreamsFromTheOwner(t *testing.T) {
	t.Parallel()
	rs := startCluster(t, newSecret, newSecret, newSecret)
	from, owner, bystander := rs[0], rs[1], rs[2]
	blob := randomBlob(32 << 20)
	dgst := digest.FromBytes(blob).String()
	owner.put(dgst, blob)
	path := "/v2/library/node/blobs/" + dgst

	resp, err := from.fwd.Forward(t.Context(), owner.peer(), clientRequest(http.MethodGet, path))
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%d after %d bytes: %v", resp.StatusCode, n, err)
	}
	if got := digest.NewDigest(digest.SHA256, h).String(); got != dgst {
		t.Fatalf("received %d bytes hashing to %s; want %s", n, got, dgst)
	}
	seen := owner.lastHeaders()
	if seen.Get("Authorization") != "" || seen.Get("Cookie") != "" {
		t.Errorf("the owner received the client's credentials: %v", seen)
	}
	if got := seen.Get("Accept-Encoding"); got != "" {
		t.Errorf("asked for %s: a compressed body would not match the digest's length and ranges", got)
	}
	if got := seen.Get("Regmirror-Forwarded-By"); got != from.url {
		t.Errorf("forwarded by %q; want %q", got, from.url)
	}
	if owner.served.Load() != 1 || bystander.reached.Load() != 0 {
		t.Errorf("owner served %d, bystander reached %d; want 1 and 0", owner.served.Load(), bystander.reached.Load())
	}
}

func TestForwardCarriesRangeHeadAndAccept(t *testing.T) {
	t.Parallel()
	rs := startCluster(t, newSecret, newSecret)
	from, owner := rs[0], rs[1]
	blob := randomBlob(4 << 20)
	dgst := digest.FromBytes(blob).String()
	owner.put(dgst, blob)
	owner.put("22-alpine", []byte(`{"schemaVersion":2}`))
	blobPath := "/v2/library/node/blobs/" + dgst

	ranged := clientRequest(http.MethodGet, blobPath)
	ranged.Header.Set("Range", "bytes=1048576-2097151")
	body, resp := forwardAll(t, from.fwd, owner, ranged)
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, blob[1<<20:2<<20]) {
		t.Errorf("Range: %d with %d bytes; want 206 with the 1 MiB asked for", resp.StatusCode, len(body))
	}

	body, resp = forwardAll(t, from.fwd, owner, clientRequest(http.MethodHead, blobPath))
	if resp.StatusCode != http.StatusOK || len(body) != 0 || resp.Header.Get("Content-Length") != strconv.Itoa(len(blob)) {
		t.Errorf("HEAD: %d, %d bytes, Content-Length %s", resp.StatusCode, len(body), resp.Header.Get("Content-Length"))
	}

	manifest := clientRequest(http.MethodGet, "/v2/library/node/manifests/22-alpine?ns=docker.io")
	const index = "application/vnd.oci.image.index.v1+json"
	manifest.Header.Set("Accept", index)
	body, _ = forwardAll(t, from.fwd, owner, manifest)
	if string(body) != `{"schemaVersion":2}` || owner.lastHeaders().Get("Accept") != index {
		t.Errorf("manifest: %q, Accept %q at the owner", body, owner.lastHeaders().Get("Accept"))
	}

	_, err := from.fwd.Forward(t.Context(), owner.peer(), clientRequest(http.MethodGet, "/v2/library/node/blobs/"+digest.FromString("absent").String()))
	if se := (*cluster.StatusError)(nil); !errors.As(err, &se) || se.StatusCode != http.StatusNotFound || se.Peer != owner.peer() {
		t.Errorf("absent blob: %v; want a StatusError 404 from the owner", err)
	}
}

// forwardAll forwards r to a replica and reads the body.
func forwardAll(t *testing.T, fwd *cluster.Forwarder, to *replica, r *http.Request) ([]byte, *http.Response) {
	t.Helper()
	resp, err := fwd.Forward(t.Context(), to.peer(), r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return body, resp
}

func TestForwardWithTheWrongSecretIsRefused(t *testing.T) {
	t.Parallel()
	rs := startCluster(t, oldSecret, newSecret)
	from, owner := rs[0], rs[1]
	owner.put("latest", []byte("{}"))
	_, err := from.fwd.Forward(t.Context(), owner.peer(), clientRequest(http.MethodGet, "/v2/app/manifests/latest"))
	if se := (*cluster.StatusError)(nil); !errors.As(err, &se) || se.StatusCode != http.StatusUnauthorized {
		t.Fatalf("Forward = %v; want a StatusError 401", err)
	}
	if owner.reached.Load() != 1 || owner.served.Load() != 0 {
		t.Errorf("owner reached %d, served %d; want 1 and 0", owner.reached.Load(), owner.served.Load())
	}
}

// A signed request sent twice, as an eavesdropper would, passes once.
func TestReplayedRequestIsRefused(t *testing.T) {
	t.Parallel()
	rs := startCluster(t, newSecret, newSecret)
	from, owner := rs[0], rs[1]
	owner.put("latest", []byte("{}"))
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, owner.url+"/v2/app/manifests/latest", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := from.auth.Sign(req); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	for i, want := range []int{http.StatusOK, http.StatusUnauthorized} {
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("send %d: %d; want %d", i+1, resp.StatusCode, want)
		}
	}
	if owner.served.Load() != 1 {
		t.Errorf("owner served %d; want 1", owner.served.Load())
	}
}

// The owner accepts the old and the new secret while the forwarder moves
// from one to the other, then only the new one.
func TestSecretRotation(t *testing.T) {
	t.Parallel()
	rs := startCluster(t, newSecret, cluster.Secrets{Current: newSecret.Current, Previous: oldSecret.Current})
	from, owner := rs[0], rs[1]
	owner.put("latest", []byte("{}"))
	steps := []struct {
		name        string
		from, owner cluster.Secrets
		wantRefused bool
	}{
		{name: "forwarder on the new secret", from: newSecret},
		{name: "forwarder on the old secret", from: oldSecret},
		{name: "owner dropped the old secret", from: oldSecret, owner: newSecret, wantRefused: true},
		{name: "forwarder back on the new secret", from: newSecret, owner: newSecret},
	}
	for _, s := range steps {
		if err := from.auth.SetSecrets(s.from); err != nil {
			t.Fatal(err)
		}
		if s.owner.Current != nil {
			if err := owner.auth.SetSecrets(s.owner); err != nil {
				t.Fatal(err)
			}
		}
		resp, err := from.fwd.Forward(t.Context(), owner.peer(), clientRequest(http.MethodGet, "/v2/app/manifests/latest"))
		if err == nil {
			resp.Body.Close()
		}
		var se *cluster.StatusError
		refused := errors.As(err, &se) && se.StatusCode == http.StatusUnauthorized
		if refused != s.wantRefused || err != nil && !refused {
			t.Errorf("%s: %v; want refused %v", s.name, err, s.wantRefused)
		}
	}
}

// Two replicas that disagree on the owner cannot bounce a request: the
// one that receives a forwarded request does not forward it again.
func TestForwardedRequestIsNotForwardedAgain(t *testing.T) {
	t.Parallel()
	rs := startCluster(t, newSecret, newSecret, newSecret)
	a, b, c := rs[0], rs[1], rs[2]
	cPeer := c.peer()
	b.forwardTo.Store(&cPeer)
	_, err := a.fwd.Forward(t.Context(), b.peer(), clientRequest(http.MethodGet, "/v2/app/manifests/latest"))
	if se := (*cluster.StatusError)(nil); !errors.As(err, &se) || se.StatusCode != http.StatusLoopDetected {
		t.Fatalf("Forward = %v; want the 508 of b's refusal to forward", err)
	}
	if err := <-b.forwardErr; !errors.Is(err, cluster.ErrAlreadyForwarded) {
		t.Errorf("b forwarding on: %v; want ErrAlreadyForwarded", err)
	}
	if c.reached.Load() != 0 {
		t.Errorf("c reached %d times; want 0", c.reached.Load())
	}
}

// countingTransport counts the requests a Forwarder sends.
type countingTransport struct {
	sent atomic.Int64
	next http.Transport
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.sent.Add(1)
	return c.next.RoundTrip(r)
}

func TestForwardRefusesBeforeAnyNetworkIO(t *testing.T) {
	t.Parallel()
	rs := startCluster(t, newSecret, newSecret)
	self, owner := rs[0], rs[1]
	owner.put("latest", []byte("{}"))
	outsider := &replica{content: map[string][]byte{}}
	outsider.auth = owner.auth
	outsiderSrv := httptest.NewServer(outsider.handler())
	t.Cleanup(outsiderSrv.Close)
	outsider.url = outsiderSrv.URL

	transport := &countingTransport{}
	t.Cleanup(transport.next.CloseIdleConnections)
	fwd := cluster.NewForwarder(self.peers, self.auth, cluster.ForwarderConfig{Transport: transport})
	blob := "/v2/library/node/blobs/" + digest.FromString("x").String()
	forwarded := clientRequest(http.MethodGet, blob)
	forwarded.Header.Set("Regmirror-Forwarded-By", owner.url)
	for name, c := range map[string]struct {
		to   cluster.Peer
		req  *http.Request
		want error
	}{
		"POST":             {owner.peer(), clientRequest(http.MethodPost, blob), cluster.ErrRefused},
		"PUT manifest":     {owner.peer(), clientRequest(http.MethodPut, "/v2/app/manifests/latest"), cluster.ErrRefused},
		"DELETE":           {owner.peer(), clientRequest(http.MethodDelete, blob), cluster.ErrRefused},
		"catalog":          {owner.peer(), clientRequest(http.MethodGet, "/v2/_catalog"), cluster.ErrRefused},
		"tags":             {owner.peer(), clientRequest(http.MethodGet, "/v2/app/tags/list"), cluster.ErrRefused},
		"upload":           {owner.peer(), clientRequest(http.MethodGet, "/v2/app/blobs/uploads/1"), cluster.ErrRefused},
		"admin page":       {owner.peer(), clientRequest(http.MethodGet, "/admin/stats"), cluster.ErrRefused},
		"dot dot":          {owner.peer(), clientRequest(http.MethodGet, "/v2/../admin/manifests/latest"), cluster.ErrRefused},
		"escaped slash":    {owner.peer(), clientRequest(http.MethodGet, "/v2/app%2fx/manifests/latest"), cluster.ErrRefused},
		"bad digest":       {owner.peer(), clientRequest(http.MethodGet, "/v2/app/blobs/sha256:abc"), cluster.ErrRefused},
		"not a member":     {outsider.peer(), clientRequest(http.MethodGet, "/v2/app/manifests/latest"), cluster.ErrRefused},
		"self":             {self.peer(), clientRequest(http.MethodGet, "/v2/app/manifests/latest"), cluster.ErrRefused},
		"forwarded before": {owner.peer(), forwarded, cluster.ErrAlreadyForwarded},
	} {
		resp, err := fwd.Forward(t.Context(), c.to, c.req)
		if err == nil {
			resp.Body.Close()
		}
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v; want %v", name, err, c.want)
		}
	}
	if n := transport.sent.Load() + owner.reached.Load() + outsider.reached.Load(); n != 0 {
		t.Fatalf("%d requests left the forwarder", n)
	}
	// The same forwarder does reach a member, so the count above can fail.
	_, resp := forwardAll(t, fwd, owner, clientRequest(http.MethodGet, "/v2/app/manifests/latest"))
	if resp.StatusCode != http.StatusOK || transport.sent.Load() != 1 {
		t.Errorf("a member: %d after %d requests; want 200 after 1", resp.StatusCode, transport.sent.Load())
	}
}

func TestForwardGivesUpWaitingForHeaders(t *testing.T) {
	t.Parallel()
	rs := startCluster(t, newSecret, newSecret)
	from, owner := rs[0], rs[1]
	owner.stall.Store(true)
	fwd := cluster.NewForwarder(from.peers, from.auth, cluster.ForwarderConfig{HeaderTimeout: 100 * time.Millisecond})
	t.Cleanup(fwd.CloseIdleConnections)
	_, err := fwd.Forward(t.Context(), owner.peer(), clientRequest(http.MethodGet, "/v2/app/manifests/latest"))
	if !errors.Is(err, cluster.ErrHeaderTimeout) {
		t.Fatalf("Forward = %v; want ErrHeaderTimeout", err)
	}
}

// An owner's redirect is not followed: it could lead anywhere.
func TestForwardDoesNotFollowRedirects(t *testing.T) {
	t.Parallel()
	rs := startCluster(t, newSecret, newSecret)
	from, owner := rs[0], rs[1]
	outsider := &replica{auth: owner.auth, content: map[string][]byte{"latest": []byte("{}")}}
	outsiderSrv := httptest.NewServer(outsider.handler())
	t.Cleanup(outsiderSrv.Close)
	owner.redirectTo.Store(&outsiderSrv.URL)
	_, err := from.fwd.Forward(t.Context(), owner.peer(), clientRequest(http.MethodGet, "/v2/app/manifests/latest"))
	if se := (*cluster.StatusError)(nil); !errors.As(err, &se) || se.StatusCode != http.StatusTemporaryRedirect {
		t.Errorf("Forward = %v; want a StatusError 307", err)
	}
	if outsider.reached.Load() != 0 {
		t.Errorf("the redirect's target was reached %d times", outsider.reached.Load())
	}
}

// unstartedServers makes n test servers, listening but not serving yet,
// and returns them with their URLs: each replica needs every URL before
// it can serve.
func unstartedServers(n int) ([]*httptest.Server, []string) {
	servers := make([]*httptest.Server, n)
	urls := make([]string, n)
	for i := range servers {
		servers[i] = httptest.NewUnstartedServer(nil)
		urls[i] = "http://" + servers[i].Listener.Addr().String()
	}
	return servers, urls
}
