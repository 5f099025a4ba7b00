package cluster_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/regmirror/regmirror/internal/cluster"
)

// hostedReplica is one replica of a test cluster reduced to hosted
// forwards: a real HTTP server behind GuardHosted (and Guard) whose
// handler passes every request to the other replica, unless it came from
// a peer, and then answers it itself with serve.
type hostedReplica struct {
	node  *cluster.Node
	url   string
	other string // the replica the handler sends clients' requests to

	mu       sync.Mutex
	seen     []*http.Request // requests that reached the handler, bodies read into bodies
	bodies   [][]byte
	loopErrs []error // what forwarding a peer's request again returned
	sendErrs []error // what ServeHosted returned for clients' requests
	serve    http.HandlerFunc
}

type localKey struct{}

// startHostedCluster starts one replica per secret, all knowing each other.
func startHostedCluster(t *testing.T, secrets ...cluster.Secrets) []*hostedReplica {
	t.Helper()
	servers, urls := unstartedServers(len(secrets))
	replicas := make([]*hostedReplica, len(secrets))
	for i, s := range secrets {
		node, err := cluster.NewNode(cluster.Config{Self: urls[i], URLs: urls}, s)
		if err != nil {
			t.Fatal(err)
		}
		rp := &hostedReplica{node: node, url: urls[i], other: urls[(i+1)%len(urls)]}
		trusted := func(ctx context.Context) context.Context { return ctx }
		local := func(ctx context.Context) context.Context { return context.WithValue(ctx, localKey{}, true) }
		servers[i].Config.Handler = node.GuardHosted(node.Guard(http.HandlerFunc(rp.handle), trusted), local)
		servers[i].Start()
		t.Cleanup(servers[i].Close)
		replicas[i] = rp
	}
	return replicas
}

// setServe makes serve answer the requests of peers.
func (rp *hostedReplica) setServe(serve http.HandlerFunc) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	rp.serve = serve
}

func (rp *hostedReplica) handle(w http.ResponseWriter, r *http.Request) {
	if r.Context().Value(localKey{}) == nil {
		w.Header().Set("X-Request-Id", "the sender's")
		err := rp.node.ServeHosted(w, r, rp.other)
		rp.mu.Lock()
		rp.sendErrs = append(rp.sendErrs, err)
		rp.mu.Unlock()
		if err != nil {
			http.Error(w, "owner unavailable", http.StatusServiceUnavailable)
		}
		return
	}
	// Replicas that disagree on the owner would send it back: refused.
	loopErr := rp.node.ServeHosted(httptest.NewRecorder(), r, rp.other)
	rp.mu.Lock()
	rp.seen = append(rp.seen, r)
	rp.loopErrs = append(rp.loopErrs, loopErr)
	serve := rp.serve
	rp.mu.Unlock()
	w.Header().Set("X-Request-Id", "the owner's")
	if serve == nil {
		fmt.Fprintf(w, "served by %s", rp.url)
		return
	}
	serve(w, r)
}

func (rp *hostedReplica) lastSeen(t *testing.T) *http.Request {
	t.Helper()
	rp.mu.Lock()
	defer rp.mu.Unlock()
	if len(rp.seen) == 0 {
		t.Fatal("no request reached the owner's handler")
	}
	return rp.seen[len(rp.seen)-1]
}

func (rp *hostedReplica) requestsServed() int {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	return len(rp.seen)
}

// A client's upload PATCH and ranged GET reach the owner through another
// replica with the client's Authorization, path, query, body and address,
// and the owner's status, Location and body come back, both ways streaming:
// the owner reads the first half of the body before the client sends the
// second, and the client reads the first half of the answer before the
// owner writes the second. The headers the sender set for the client (a
// request ID) are not doubled by the owner's. The client's own peer
// headers are dropped; the
// owner serves it as a hosted forward, not a trusted peer's, and does not
// pass it on again.
func TestHostedForwardStreamsTheClientsRequestToTheOwner(t *testing.T) {
	t.Parallel()
	replicas := startHostedCluster(t, oldSecret, oldSecret)
	sender, owner := replicas[0], replicas[1]
	half := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	ownerGotHalf, clientGotHalf := make(chan struct{}), make(chan struct{})
	owner.setServe(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPatch {
			got, err := io.ReadFull(r.Body, make([]byte, len(half)))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			close(ownerGotHalf)
			rest, _ := io.ReadAll(r.Body)
			w.Header().Set("Location", "/v2/team/app/blobs/uploads/abc")
			w.Header().Set("Range", fmt.Sprintf("0-%d", got+len(rest)-1))
			w.WriteHeader(http.StatusAccepted)
			return
		}
		w.Header().Set("Content-Range", "bytes 5-"+fmt.Sprint(2*len(half)+4)+"/*")
		w.WriteHeader(http.StatusPartialContent)
		w.Write(half)
		w.(http.Flusher).Flush()
		<-clientGotHalf
		w.Write(half)
	})

	body, pw := io.Pipe()
	go func() {
		pw.Write(half)
		<-ownerGotHalf
		pw.Write(half)
		pw.Close()
	}()
	req, _ := http.NewRequest(http.MethodPatch, sender.url+"/v2/team/app/blobs/uploads/abc?x=1", body)
	req.Header.Set("Authorization", "Bearer client-token")
	req.Header.Set("Regmirror-Client-Addr", "6.6.6.6:1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ids := resp.Header.Values("X-Request-Id"); len(ids) != 1 || ids[0] != "the sender's" {
		t.Errorf("X-Request-Id = %q; want the sender's alone", ids)
	}
	if resp.StatusCode != http.StatusAccepted || resp.Header.Get("Location") != "/v2/team/app/blobs/uploads/abc" || resp.Header.Get("Range") != fmt.Sprintf("0-%d", 2*len(half)-1) {
		t.Fatalf("PATCH = %d, Location %q, Range %q", resp.StatusCode, resp.Header.Get("Location"), resp.Header.Get("Range"))
	}
	seen := owner.lastSeen(t)
	switch {
	case seen.Header.Get("Authorization") != "Bearer client-token":
		t.Errorf("the owner saw Authorization %q", seen.Header.Get("Authorization"))
	case seen.URL.RawQuery != "x=1" || seen.URL.Path != "/v2/team/app/blobs/uploads/abc":
		t.Errorf("the owner saw %s", seen.URL)
	case !strings.HasPrefix(seen.RemoteAddr, "127.0.0.1:"):
		t.Errorf("the owner saw the client at %q, want the address the sender saw", seen.RemoteAddr)
	case !cluster.FromHostedPeer(seen.Context()) || cluster.FromPeer(seen.Context()):
		t.Errorf("FromHostedPeer %v, FromPeer %v; want a hosted forward, not a trusted peer's request",
			cluster.FromHostedPeer(seen.Context()), cluster.FromPeer(seen.Context()))
	}
	owner.mu.Lock()
	loopErr := owner.loopErrs[0]
	owner.mu.Unlock()
	if err := loopErr; !errors.Is(err, cluster.ErrAlreadyForwarded) {
		t.Errorf("the owner passing a hosted forward on again: %v, want ErrAlreadyForwarded", err)
	}

	req, _ = http.NewRequest(http.MethodGet, sender.url+"/v2/team/app/blobs/sha256:"+strings.Repeat("a", 64), nil)
	req.Header.Set("Range", "bytes=5-")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, len(half))
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatal(err)
	}
	close(clientGotHalf)
	rest, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusPartialContent || sha256.Sum256(append(first, rest...)) != sha256.Sum256(append(half, half...)) {
		t.Fatalf("GET = %d, %d bytes, %v", resp.StatusCode, len(first)+len(rest), err)
	}
	if got := owner.lastSeen(t).Header.Get("Range"); got != "bytes=5-" {
		t.Errorf("the owner saw Range %q", got)
	}
}

// An attacker who can reach a replica cannot make it serve a request
// itself by marking the request as a hosted forward: without a valid
// signature of the hosted channel (none, a trusted forward's, a replay,
// a signed client address changed), the mark is
// refused with 401 before any handler runs.
func TestHostedForwardMarkMustBeSignedForHostedForwards(t *testing.T) {
	t.Parallel()
	replicas := startHostedCluster(t, oldSecret, oldSecret)
	sender, owner := replicas[0], replicas[1]
	resp, err := http.Get(sender.url + "/v2/team/app/manifests/1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	captured := owner.lastSeen(t).Header.Clone()

	trustedAuth, err := cluster.NewAuthenticator(cluster.AuthConfig{Secrets: oldSecret})
	if err != nil {
		t.Fatal(err)
	}
	path := owner.url + "/v2/team/app/manifests/1"
	tests := []struct {
		name    string
		request func() *http.Request
	}{
		{"unsigned mark", func() *http.Request {
			r, _ := http.NewRequest(http.MethodGet, path, nil)
			r.Header.Set("Regmirror-Hosted-Forwarded-By", sender.url)
			return r
		}},
		{"replayed", func() *http.Request {
			r, _ := http.NewRequest(http.MethodGet, path, nil)
			r.Header = captured.Clone()
			return r
		}},
		{"signed client address changed", func() *http.Request {
			r, _ := http.NewRequest(http.MethodGet, path, nil)
			r.Header = captured.Clone()
			r.Header.Set("Regmirror-Client-Addr", "10.9.9.9:1")
			return r
		}},
		{"trusted forward's signature", func() *http.Request {
			r, _ := http.NewRequest(http.MethodGet, path, nil)
			r.Header.Set("Regmirror-Hosted-Forwarded-By", sender.url)
			if err := trustedAuth.Sign(r); err != nil {
				t.Fatal(err)
			}
			return r
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := owner.requestsServed()
			resp, err := http.DefaultClient.Do(tt.request())
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized || owner.requestsServed() != before {
				t.Errorf("= %d, %d requests served; want 401 and none", resp.StatusCode, owner.requestsServed()-before)
			}
		})
	}
}

// A sender whose forwards the owner refuses (another secret) or which
// cannot reach the owner writes nothing and returns ErrOwnerUnavailable,
// for the mirror to answer 503: the client never sees the owner's 401 as
// if its login were wrong.
func TestHostedForwardOwnerUnavailable(t *testing.T) {
	t.Parallel()
	dead := httptest.NewServer(nil)
	deadURL := dead.URL
	dead.Close()
	refusing := httptest.NewUnstartedServer(nil)
	refusingURL := "http://" + refusing.Listener.Addr().String()
	senderURL := "http://127.0.0.1:9"
	owner, err := cluster.NewNode(cluster.Config{Self: refusingURL, URLs: []string{senderURL}}, newSecret)
	if err != nil {
		t.Fatal(err)
	}
	refusing.Config.Handler = owner.GuardHosted(http.NotFoundHandler(), func(ctx context.Context) context.Context { return ctx })
	refusing.Start()
	t.Cleanup(refusing.Close)
	sender, err := cluster.NewNode(cluster.Config{Self: senderURL, URLs: []string{deadURL, refusingURL}}, oldSecret)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, owner, method string }{
		{"down, GET", deadURL, http.MethodGet},
		{"down, PATCH", deadURL, http.MethodPatch},
		{"refuses the signature, HEAD", refusingURL, http.MethodHead},
		{"refuses the signature, PUT", refusingURL, http.MethodPut},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			r := httptest.NewRequest(tt.method, "/v2/team/app/blobs/uploads/x", strings.NewReader("data"))
			err := sender.ServeHosted(w, r, tt.owner)
			if !errors.Is(err, cluster.ErrOwnerUnavailable) {
				t.Errorf("ServeHosted = %v; want ErrOwnerUnavailable", err)
			}
			if w.Body.Len() != 0 || len(w.Header()) != 0 || w.Code != http.StatusOK {
				t.Errorf("wrote %d %v %q; want nothing", w.Code, w.Header(), w.Body)
			}
		})
	}
}
