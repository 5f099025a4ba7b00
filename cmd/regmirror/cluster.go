package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/internal/cluster"
	"github.com/regmirror/regmirror/mirror"
)

// ClusterConfig is the `cluster:` section: this daemon is one of several
// replicas behind a load balancer, and each blob is fetched from the
// upstream by one of them, its owner, from which the others download it.
// Off when the section is absent.
type ClusterConfig struct {
	// Self is this replica's base URL as its peers reach it, e.g.
	// http://10.0.0.1:5000.
	Self string `yaml:"self"`
	// Peers are the replicas' base URLs (Self may be among them).
	Peers []string `yaml:"peers"`
	// DNS is a name and port, e.g. regmirror-peers.ns.svc:5000, whose
	// addresses are the replicas (a Kubernetes headless Service),
	// resolved again every Refresh. Set Peers or DNS, not both.
	DNS string `yaml:"dns"`
	// Refresh is how often DNS is resolved again (default 30s).
	Refresh time.Duration `yaml:"refresh"`
	// SecretFile holds the key shared by the replicas that signs their
	// requests to one another; PreviousSecretFile, during a rotation, the
	// old one, still accepted.
	SecretFile         string `yaml:"secret_file"`
	PreviousSecretFile string `yaml:"previous_secret_file"`
}

// enabled reports whether the file has a cluster section with anything in it.
func (c ClusterConfig) enabled() bool {
	return c.Self != "" || len(c.Peers) > 0 || c.DNS != "" || c.SecretFile != "" || c.PreviousSecretFile != "" || c.Refresh != 0
}

func (c ClusterConfig) validate() error {
	if !c.enabled() {
		return nil
	}
	var errs []error
	if c.Self == "" {
		errs = append(errs, keyErrorf("cluster", "cluster: self is required: this replica's URL as its peers reach it"))
	} else if _, err := cluster.ParsePeer(c.Self); err != nil {
		errs = append(errs, keyErrorf("cluster.self", "cluster.self: %w", err))
	}
	switch {
	case len(c.Peers) > 0 && c.DNS != "":
		errs = append(errs, keyErrorf("cluster.dns", "cluster: set peers or dns, not both"))
	case len(c.Peers) == 0 && c.DNS == "":
		errs = append(errs, keyErrorf("cluster", "cluster: set peers (the replicas' URLs) or dns (name:port)"))
	}
	for i, p := range c.Peers {
		if _, err := cluster.ParsePeer(p); err != nil {
			errs = append(errs, keyErrorf(fmt.Sprintf("cluster.peers[%d]", i), "cluster.peers[%d]: %w", i, err))
		}
	}
	if c.DNS != "" {
		if _, _, err := c.dnsName(); err != nil {
			errs = append(errs, keyErrorf("cluster.dns", "cluster.dns: %w", err))
		}
	}
	if c.Refresh < 0 {
		errs = append(errs, keyErrorf("cluster.refresh", "cluster.refresh must not be negative"))
	}
	if c.Refresh != 0 && c.DNS == "" {
		errs = append(errs, keyErrorf("cluster.refresh", "cluster.refresh is for dns"))
	}
	if c.SecretFile == "" {
		errs = append(errs, keyErrorf("cluster", "cluster: secret_file is required: the replicas sign their requests to one another with it"))
	}
	if c.PreviousSecretFile != "" && c.SecretFile == "" {
		errs = append(errs, keyErrorf("cluster.previous_secret_file", "cluster.previous_secret_file needs secret_file"))
	}
	return errors.Join(errs...)
}

// dnsName splits DNS into a host name and a port.
func (c ClusterConfig) dnsName() (string, int, error) {
	host, portStr, err := net.SplitHostPort(c.DNS)
	if err != nil {
		return "", 0, fmt.Errorf("%q: want name:port, e.g. regmirror-peers.default.svc:5000", c.DNS)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 || port > 65535 || host == "" {
		return "", 0, fmt.Errorf("%q: want name:port, e.g. regmirror-peers.default.svc:5000", c.DNS)
	}
	return host, port, nil
}

// secrets reads the secret files. Errors name the files, never what they
// hold.
func (c ClusterConfig) secrets() (cluster.Secrets, error) {
	var s cluster.Secrets
	var err error
	if s.Current, err = cluster.ReadSecretFile(c.SecretFile); err != nil {
		return s, &keyError{key: "cluster.secret_file", err: fmt.Errorf("cluster.secret_file: %w", err)}
	}
	if c.PreviousSecretFile != "" {
		if s.Previous, err = cluster.ReadSecretFile(c.PreviousSecretFile); err != nil {
			return s, &keyError{key: "cluster.previous_secret_file", err: fmt.Errorf("cluster.previous_secret_file: %w", err)}
		}
	}
	return s, nil
}

// fileErrors reports the secret files the daemon could not use, for
// config check.
func (c ClusterConfig) fileErrors() []error {
	if !c.enabled() || c.SecretFile == "" {
		return nil
	}
	if _, err := c.secrets(); err != nil {
		return []error{err}
	}
	return nil
}

// clusterNode is this replica's part in a cluster: the members, the
// signatures, and the client to the owners.
type clusterNode struct {
	peers *cluster.Peers
	auth  *cluster.Authenticator
	fwd   *cluster.Forwarder
}

// newClusterNode builds the cluster of cfg; nil when the section is off.
func newClusterNode(cfg ClusterConfig, log *slog.Logger) (*clusterNode, error) {
	if !cfg.enabled() {
		return nil, nil
	}
	secrets, err := cfg.secrets()
	if err != nil {
		return nil, err
	}
	members := cluster.Config{Self: cfg.Self, URLs: cfg.Peers, Interval: cfg.Refresh, Logger: log}
	if cfg.DNS != "" {
		if members.DNSName, members.Port, err = cfg.dnsName(); err != nil {
			return nil, err
		}
		self, _ := cluster.ParsePeer(cfg.Self) // validated
		members.Scheme, _, _ = strings.Cut(self.URL, "://")
	}
	n := &clusterNode{}
	if n.peers, err = cluster.New(members); err != nil {
		return nil, err
	}
	if n.auth, err = cluster.NewAuthenticator(cluster.AuthConfig{Secrets: secrets}); err != nil {
		return nil, err
	}
	n.fwd = cluster.NewForwarder(n.peers, n.auth, cluster.ForwarderConfig{})
	return n, nil
}

// mirrorPeers is what the mirror is given of the cluster; nil when off.
func (n *clusterNode) mirrorPeers() mirror.Peers {
	if n == nil {
		return nil
	}
	return clusterPeers{n}
}

// run re-resolves the members until ctx ends (with dns), then closes the
// connections to peers.
func (n *clusterNode) run(ctx context.Context) error {
	if n == nil {
		return nil
	}
	defer n.fwd.CloseIdleConnections()
	err := n.peers.Run(ctx)
	<-ctx.Done()
	return err
}

// guard refuses requests marked as forwarded by a peer unless their
// signature verifies (401), and serves those that do as a peer's
// (mirror.WithTrustedPeer). Others pass as they are. Without a cluster
// the mark means nothing and grants nothing.
func (n *clusterNode) guard(next http.Handler) http.Handler {
	if n == nil {
		return next
	}
	verified := n.auth.Verify(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(mirror.WithTrustedPeer(r.Context())))
	}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if cluster.Forwarded(r) {
			verified.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// clusterPeers adapts the cluster to mirror.Peers.
type clusterPeers struct{ n *clusterNode }

var _ mirror.Peers = clusterPeers{}

func (p clusterPeers) Owner(key string) (string, bool) {
	owner := p.n.peers.Owner(key)
	return owner.URL, owner == p.n.peers.Self()
}

func (p clusterPeers) FetchBlob(ctx context.Context, peer, host, repo string, d digest.Digest, offset int64) (io.ReadCloser, int64, int64, error) {
	return p.n.fwd.GetBlob(ctx, cluster.Peer{URL: peer}, host, repo, d, offset)
}

func (p clusterPeers) ResolveManifest(ctx context.Context, peer, host, repo, ref string) (digest.Digest, error) {
	return p.n.fwd.HeadManifest(ctx, cluster.Peer{URL: peer}, host, repo, ref)
}

func (p clusterPeers) FetchManifest(ctx context.Context, peer, host, repo, ref string) (string, []byte, error) {
	mediaType, data, _, err := p.n.fwd.GetManifest(ctx, cluster.Peer{URL: peer}, host, repo, ref)
	return mediaType, data, err
}
