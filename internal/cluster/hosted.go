package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"
)

// The headers of a hosted forward: a client's request for a hosted
// repository that a replica passes on to the replica owning it.
const (
	// headerHostedBy marks a hosted forward; its value is the sender's URL.
	headerHostedBy = "Regmirror-Hosted-Forwarded-By"
	// headerClientAddr is the client's address as the sender saw it, so
	// that the owner counts failed logins and misses per client rather
	// than per replica. Signed: only a peer can set it.
	headerClientAddr = "Regmirror-Client-Addr"
	// headerClientHost and headerClientRequestID are the Host the client
	// named and the request ID it is answered with, so that what the
	// owner reports of the request (webhook events, the access log) is
	// the client's request, not the forward's: the owner's own address
	// may be out of a receiver's reach, and its ID on no response.
	headerClientHost      = "Regmirror-Client-Host"
	headerClientRequestID = "Regmirror-Client-Request-Id"
	// headerRefused is set on the owner's 401 that refuses the mark of a
	// hosted forward, so that the sender tells it from a refused login.
	headerRefused = "Regmirror-Peer-Refused"
)

// hostedChannel signs hosted forwards. Its purpose line makes its
// signatures worthless on the trusted channel, and the other way round:
// a hosted forward carries a client's own credentials and is served
// with them, never with a peer's rights.
var hostedChannel = channel{purpose: "regmirror-hosted-forward", extra: []string{headerHostedBy, headerClientAddr, headerClientHost, headerClientRequestID}}

// peerHeaders are the headers of the peer channels, which a client's
// request must not carry to the owner.
var peerHeaders = []string{headerTime, headerNonce, headerSignature, headerForwardedBy, headerHostedBy, headerClientAddr, headerClientHost, headerClientRequestID, headerRefused}

var errNotRegistry = &refusal{http.StatusForbidden, "hosted forwards are for the registry API only"}

// ErrOwnerUnavailable is returned, wrapped, when the owner of a hosted
// repository did not serve a hosted forward: it could not be reached,
// sent no response headers in time, or refused the peer signature.
var ErrOwnerUnavailable = errors.New("owner replica unavailable")

// HostedProxy passes clients' requests for hosted repositories to the
// replica that owns the repository, as a reverse proxy: both bodies
// stream, and the client's headers go as they are, Authorization
// included, for the owner to check the client's login and permissions as
// if the client had asked it. It is safe for concurrent use.
type HostedProxy struct {
	peers     *Peers
	transport http.RoundTripper
	errorLog  *slog.Logger
}

// NewHostedProxy returns a HostedProxy to the members of peers, signing
// with auth. Of cfg, HeaderTimeout bounds the connection to the owner and,
// for GET and HEAD, the wait for its response headers; writes (a PATCH of
// gigabytes, a PUT that hashes them) take as long as they take.
func NewHostedProxy(peers *Peers, auth *Authenticator, cfg ForwarderConfig) *HostedProxy {
	if cfg.HeaderTimeout <= 0 {
		cfg.HeaderTimeout = DefaultHeaderTimeout
	}
	if cfg.Transport == nil {
		t := peerTransport()
		t.DialContext = (&net.Dialer{Timeout: cfg.HeaderTimeout, KeepAlive: 30 * time.Second}).DialContext
		// Every client's hosted requests to one owner share these
		// connections: keep more than the default two for reuse.
		t.MaxIdleConnsPerHost = 64
		cfg.Transport = t
	}
	return &HostedProxy{
		peers:     peers,
		transport: &hostedTransport{inner: cfg.Transport, auth: auth, headerTimeout: cfg.HeaderTimeout},
		errorLog:  peers.log,
	}
}

// CloseIdleConnections closes the connections to peers kept for reuse.
func (p *HostedProxy) CloseIdleConnections() {
	if c, ok := p.transport.(*hostedTransport).inner.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// Serve passes r to owner, marked and signed as a hosted forward so that
// the owner serves it itself, and copies the answer to w, but for the
// headers w has already, which stay as they are. When it returns
// an error, nothing was written to w: the request was not for a peer
// (ErrRefused: the owner is this replica or not a member; ErrAlreadyForwarded:
// a peer sent r), or the owner did not serve it (ErrOwnerUnavailable).
// A body cut once the answer started aborts the client's connection.
func (p *HostedProxy) Serve(w http.ResponseWriter, r *http.Request, owner Peer) error {
	if err := p.check(owner, r); err != nil {
		return err
	}
	target, err := url.Parse(owner.URL)
	if err != nil {
		return fmt.Errorf("hosted forward to %s: %w", owner, err)
	}
	var failed error
	proxy := &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { p.rewrite(pr, target) },
		Transport: p.transport,
		ModifyResponse: func(resp *http.Response) error {
			if err := refusedMark(resp); err != nil {
				return err
			}
			// The headers this replica set for the client (its request ID,
			// the API version) stand alone rather than beside the owner's.
			for h := range w.Header() {
				resp.Header.Del(h)
			}
			return nil
		},
		ErrorHandler: func(_ http.ResponseWriter, _ *http.Request, err error) {
			failed = fmt.Errorf("hosted forward to %s: %w: %w", owner, ErrOwnerUnavailable, err)
		},
		ErrorLog: slog.NewLogLogger(p.errorLog.Handler(), slog.LevelWarn),
	}
	proxy.ServeHTTP(w, r)
	return failed
}

func (p *HostedProxy) check(owner Peer, r *http.Request) error {
	switch {
	case Forwarded(r) || FromPeer(r.Context()) || HostedForwarded(r) || FromHostedPeer(r.Context()):
		return ErrAlreadyForwarded
	case owner == p.peers.Self():
		return fmt.Errorf("%w: the owner is this replica", ErrRefused)
	case !p.peers.isMember(owner):
		return fmt.Errorf("%w: %s is not a member", ErrRefused, owner)
	}
	return nil
}

// rewrite addresses the request to target and marks it, keeping the
// client's path, query, headers and body. The owner's Host is the one
// signed, so that a forward seen on the wire is no good at another
// replica.
func (p *HostedProxy) rewrite(pr *httputil.ProxyRequest, target *url.URL) {
	pr.Out.URL.Scheme, pr.Out.URL.Host = target.Scheme, target.Host
	pr.Out.Host = ""
	for _, h := range peerHeaders {
		pr.Out.Header.Del(h)
	}
	pr.Out.Header.Set(headerHostedBy, p.peers.Self().URL)
	pr.Out.Header.Set(headerClientAddr, pr.In.RemoteAddr)
	pr.Out.Header.Set(headerClientHost, pr.In.Host)
	pr.Out.Header.Set(headerClientRequestID, pr.In.Header.Get(requestIDHeader))
}

// requestIDHeader is the request ID the edge (package internal/edge) gives
// each request and its response.
const requestIDHeader = "X-Request-Id"

// refusedMark fails a forward whose mark the owner refused: a
// misconfigured secret or clock, which the client's 401 would misname as
// a bad login.
func refusedMark(resp *http.Response) error {
	if resp.StatusCode == http.StatusUnauthorized && resp.Header.Get(headerRefused) != "" {
		return fmt.Errorf("the owner refused the peer signature: %s", resp.Header.Get(headerRefused))
	}
	return nil
}

// hostedTransport signs each hosted forward as it leaves and bounds the
// wait for the owner's response headers to reads.
type hostedTransport struct {
	inner         http.RoundTripper
	auth          *Authenticator
	headerTimeout time.Duration
}

func (t *hostedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancel(req.Context())
	out := req.Clone(ctx)
	if err := t.auth.signOn(hostedChannel, out, time.Now()); err != nil {
		cancel()
		return nil, err
	}
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		resp, err := t.inner.RoundTrip(out)
		return withCancel(resp, err, cancel)
	}
	timer := time.AfterFunc(t.headerTimeout, cancel)
	resp, err := t.inner.RoundTrip(out)
	if !timer.Stop() {
		if err == nil {
			resp.Body.Close()
		}
		return nil, fmt.Errorf("%w (%s)", ErrHeaderTimeout, t.headerTimeout)
	}
	return withCancel(resp, err, cancel)
}

// withCancel ends the forward's context with the response body, or at
// once when there is no response.
func withCancel(resp *http.Response, err error, cancel context.CancelFunc) (*http.Response, error) {
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// HostedForwarded reports whether r carries the mark of a hosted forward.
// Only GuardHosted says whether a peer really sent it (FromHostedPeer).
func HostedForwarded(r *http.Request) bool { return r.Header.Get(headerHostedBy) != "" }

type fromHostedPeerKey struct{}

// FromHostedPeer reports whether the request of ctx is a hosted forward
// that passed GuardHosted: it must be served here, never forwarded again,
// with the client's credentials only.
func FromHostedPeer(ctx context.Context) bool {
	v, _ := ctx.Value(fromHostedPeerKey{}).(bool)
	return v
}

// verifyHosted passes on only hosted forwards signed by a peer, for the
// registry API, with the client's address they carry, and refuses the
// others as Verify does, with headerRefused set on the refusal.
func (a *Authenticator) verifyHosted(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ref := a.verifyOn(hostedChannel, r, time.Now(), func() *refusal {
			if !strings.HasPrefix(r.URL.Path, "/v2/") {
				return errNotRegistry
			}
			return nil
		})
		if ref != nil {
			w.Header().Set(headerRefused, ref.msg)
			if ref.status == http.StatusServiceUnavailable {
				w.Header().Set("Retry-After", "1")
			}
			http.Error(w, ref.msg, ref.status)
			return
		}
		next.ServeHTTP(w, asClientSent(r))
	})
}

// asClientSent is a verified hosted forward r as its client sent it to
// the replica that passed it on: from the client's address, to the Host
// it named, with the request ID it is answered with.
func asClientSent(r *http.Request) *http.Request {
	r = r.WithContext(context.WithValue(r.Context(), fromHostedPeerKey{}, true))
	r.RemoteAddr = r.Header.Get(headerClientAddr)
	r.Host = r.Header.Get(headerClientHost)
	if id := r.Header.Get(headerClientRequestID); id != "" {
		r.Header = r.Header.Clone()
		r.Header.Set(requestIDHeader, id)
	}
	return r
}
