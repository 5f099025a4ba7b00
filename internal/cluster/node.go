package cluster

import (
	"context"
	"io"
	"net/http"
	"net/netip"
	"net/url"

	"github.com/opencontainers/go-digest"
)

// Node is this replica's part in a cluster: the members, the signatures,
// and the client to the owners. Its Owner, FetchBlob, ResolveManifest and
// FetchManifest are what a mirror asks of its peers (mirror.Peers).
type Node struct {
	peers  *Peers
	auth   *Authenticator
	fwd    *Forwarder
	hosted *HostedProxy
}

// NewNode makes the node of the members cfg names, signing with secrets.
func NewNode(cfg Config, secrets Secrets) (*Node, error) {
	n := &Node{}
	var err error
	if n.peers, err = New(cfg); err != nil {
		return nil, err
	}
	if n.auth, err = NewAuthenticator(AuthConfig{Secrets: secrets}); err != nil {
		return nil, err
	}
	n.fwd = NewForwarder(n.peers, n.auth, ForwarderConfig{})
	n.hosted = NewHostedProxy(n.peers, n.auth, ForwarderConfig{})
	return n, nil
}

// Run re-resolves the members until ctx ends (with a DNS name), then
// closes the connections to peers.
func (n *Node) Run(ctx context.Context) error {
	defer n.fwd.CloseIdleConnections()
	defer n.hosted.CloseIdleConnections()
	err := n.peers.Run(ctx)
	<-ctx.Done()
	return err
}

// Guard refuses requests marked as forwarded by a peer unless their
// signature verifies (401), and serves those that do with the context
// trusted makes of theirs. Other requests pass as they are: without the
// mark a request is a client's, and the mark grants nothing unsigned.
func (n *Node) Guard(next http.Handler, trusted func(context.Context) context.Context) http.Handler {
	verified := n.auth.Verify(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(trusted(r.Context())))
	}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if Forwarded(r) {
			verified.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Owner returns the URL of the replica that owns key, and whether that is
// this one.
func (n *Node) Owner(key string) (string, bool) {
	owner := n.peers.Owner(key)
	return owner.URL, owner == n.peers.Self()
}

// FetchBlob reads blob d of repo on registry host from peer, from offset.
func (n *Node) FetchBlob(ctx context.Context, peer, host, repo string, d digest.Digest, offset int64) (io.ReadCloser, int64, int64, error) {
	return n.fwd.GetBlob(ctx, Peer{URL: peer}, host, repo, d, offset)
}

// ResolveManifest asks peer for the digest ref (a tag) points to.
func (n *Node) ResolveManifest(ctx context.Context, peer, host, repo, ref string) (digest.Digest, error) {
	return n.fwd.HeadManifest(ctx, Peer{URL: peer}, host, repo, ref)
}

// FetchManifest reads manifest ref of repo on registry host from peer.
func (n *Node) FetchManifest(ctx context.Context, peer, host, repo, ref string) (string, []byte, error) {
	mediaType, data, _, err := n.fwd.GetManifest(ctx, Peer{URL: peer}, host, repo, ref)
	return mediaType, data, err
}

// GuardHosted refuses requests marked as hosted forwards unless their
// signature verifies (401), and serves those that do with the context
// local makes of theirs, from the client address the peer signed. The
// mark only says "serve this here": the request keeps the client's
// credentials and is served with their rights, never a peer's. Other
// requests pass as they are.
func (n *Node) GuardHosted(next http.Handler, local func(context.Context) context.Context) http.Handler {
	verified := n.auth.verifyHosted(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(local(r.Context())))
	}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if HostedForwarded(r) {
			verified.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// ServeHosted passes a client's request for a hosted repository to peer,
// its owner (see HostedProxy.Serve).
func (n *Node) ServeHosted(w http.ResponseWriter, r *http.Request, peer string) error {
	return n.hosted.Serve(w, r, Peer{URL: peer})
}

// IsMemberAddr reports whether addr is the address of a member whose URL
// names it by IP address (as the members found through DNS all are): the
// connections from such a peer carry many clients' hosted forwards, and a
// cap on one client's connections must not apply to them.
func (n *Node) IsMemberAddr(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, p := range n.peers.Snapshot() {
		u, err := url.Parse(p.URL)
		if err != nil {
			continue
		}
		if a, err := netip.ParseAddr(u.Hostname()); err == nil && a.Unmap() == addr {
			return true
		}
	}
	return false
}
