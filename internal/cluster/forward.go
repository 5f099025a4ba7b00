package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// headerForwardedBy marks a request that one replica forwarded to
// another; its value is the sender's URL, for the owner's logs.
const headerForwardedBy = "Regmirror-Forwarded-By"

// DefaultHeaderTimeout is how long Forward waits for the owner's response
// headers when the configuration leaves it zero.
const DefaultHeaderTimeout = 10 * time.Second

var (
	// ErrAlreadyForwarded is returned by Forward for a request that a peer
	// forwarded here: it is served here or not at all, so that two
	// replicas that disagree on the members cannot bounce it between them.
	ErrAlreadyForwarded = errors.New("request already forwarded by a peer")
	// ErrHeaderTimeout is returned, wrapped, when the owner sends no
	// response headers within the header timeout.
	ErrHeaderTimeout = errors.New("peer sent no response headers in time")
)

// StatusError is the owner's answer when it is neither 200 nor 206.
type StatusError struct {
	Peer       Peer
	StatusCode int
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("peer %s answered %d %s", e.Peer, e.StatusCode, http.StatusText(e.StatusCode))
}

// Forwarded reports whether r carries the mark of a forwarded request.
// Only Verify says whether a peer really sent it (FromPeer).
func Forwarded(r *http.Request) bool { return r.Header.Get(headerForwardedBy) != "" }

// ForwarderConfig configures a Forwarder. Its zero value is the defaults.
type ForwarderConfig struct {
	// HeaderTimeout bounds the wait for the owner's response headers, the
	// connection included; the body streams for as long as it takes.
	// Zero means DefaultHeaderTimeout.
	HeaderTimeout time.Duration
	// Transport sends the requests; nil means a clone of
	// http.DefaultTransport that ignores proxy settings, since peers talk
	// directly, and asks for no compression, which would change the
	// length and the Range offsets of what the owner sends.
	Transport http.RoundTripper
}

// Forwarder hands a request to the replica that owns what it asks for.
// It is safe for concurrent use.
type Forwarder struct {
	peers         *Peers
	auth          *Authenticator
	client        *http.Client
	headerTimeout time.Duration
}

// NewForwarder returns a Forwarder that sends to the members of peers,
// signing with auth.
func NewForwarder(peers *Peers, auth *Authenticator, cfg ForwarderConfig) *Forwarder {
	if cfg.HeaderTimeout <= 0 {
		cfg.HeaderTimeout = DefaultHeaderTimeout
	}
	if cfg.Transport == nil {
		cfg.Transport = peerTransport()
	}
	client := &http.Client{
		Transport: cfg.Transport,
		// A redirect would send the request somewhere other than a member.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &Forwarder{peers: peers, auth: auth, client: client, headerTimeout: cfg.HeaderTimeout}
}

// CloseIdleConnections closes the connections to peers kept for reuse.
func (f *Forwarder) CloseIdleConnections() { f.client.CloseIdleConnections() }

// Forward sends r, a client's GET or HEAD of a blob or manifest, to owner
// with the same path, query, Range and Accept headers, and nothing else of
// the client's: not its Authorization, since this replica has authorized
// the client already. It returns the owner's 200 or 206 response, whose
// body streams and must be closed, or a *StatusError for any other status.
//
// Before any network I/O it refuses, with ErrRefused, other methods and
// paths and an owner that is this replica or not a member, and with
// ErrAlreadyForwarded a request a peer forwarded here.
func (f *Forwarder) Forward(ctx context.Context, owner Peer, r *http.Request) (*http.Response, error) {
	if err := f.check(owner, r); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	resp, err := f.roundTrip(ctx, cancel, owner, r)
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

func (f *Forwarder) check(owner Peer, r *http.Request) error {
	switch {
	case Forwarded(r) || FromPeer(r.Context()):
		return ErrAlreadyForwarded
	case owner == f.peers.Self():
		return fmt.Errorf("%w: the owner is this replica", ErrRefused)
	case !f.peers.isMember(owner):
		return fmt.Errorf("%w: %s is not a member", ErrRefused, owner)
	}
	return checkForwardable(r.Method, r.URL)
}

// roundTrip sends r rebuilt for owner and waits for the response headers
// no longer than the header timeout, after which cancel ends the request.
func (f *Forwarder) roundTrip(ctx context.Context, cancel context.CancelFunc, owner Peer, r *http.Request) (*http.Response, error) {
	out, err := f.rebuild(ctx, owner, r)
	if err != nil {
		return nil, err
	}
	timer := time.AfterFunc(f.headerTimeout, cancel)
	resp, err := f.client.Do(out)
	if !timer.Stop() {
		if err == nil {
			resp.Body.Close()
		}
		return nil, fmt.Errorf("forward to %s: %w (%s)", owner, ErrHeaderTimeout, f.headerTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("forward to %s: %w", owner, err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusPartialContent {
		// Drain a little so that the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
		return nil, &StatusError{Peer: owner, StatusCode: resp.StatusCode}
	}
	return resp, nil
}

// rebuild makes the signed request for owner from the client's r,
// carrying over only what names the content.
func (f *Forwarder) rebuild(ctx context.Context, owner Peer, r *http.Request) (*http.Request, error) {
	out, err := http.NewRequestWithContext(ctx, r.Method, owner.URL+r.URL.EscapedPath(), nil)
	if err != nil {
		return nil, fmt.Errorf("forward to %s: %w", owner, err)
	}
	out.URL.RawQuery = r.URL.RawQuery
	for _, h := range []string{"Range", "Accept"} {
		for _, v := range r.Header.Values(h) {
			out.Header.Add(h, v)
		}
	}
	out.Header.Set("User-Agent", "regmirror-peer")
	out.Header.Set(headerForwardedBy, f.peers.Self().URL)
	if err := f.auth.Sign(out); err != nil {
		return nil, fmt.Errorf("forward to %s: %w", owner, err)
	}
	return out, nil
}

// cancelOnClose ends the forwarded request's context with its body.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// peerTransport is the transport of a peer channel when the configuration
// gives none: a clone of http.DefaultTransport that ignores proxy
// settings, since peers talk directly, and asks for no compression, which
// would change the length and the Range offsets of what the owner sends.
func peerTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	t.DisableCompression = true
	return t
}
