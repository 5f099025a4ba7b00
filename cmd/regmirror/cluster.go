package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

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

// newClusterNode builds the cluster of cfg; nil when the section is off.
func newClusterNode(cfg ClusterConfig, log *slog.Logger) (*cluster.Node, error) {
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
	return cluster.NewNode(members, secrets)
}

var _ mirror.Peers = (*cluster.Node)(nil)

// peersOf is what the mirror is given of the cluster; nil when it is off.
func peersOf(n *cluster.Node) mirror.Peers {
	if n == nil {
		return nil
	}
	return n
}

// hostedOwnersOf is what the mirror is given of the cluster for hosted
// repositories; nil when it is off.
func hostedOwnersOf(n *cluster.Node) mirror.HostedOwners {
	if n == nil {
		return nil
	}
	return n
}

// guardPeers verifies peer requests (see cluster.Node.Guard and
// GuardHosted) and serves them as a trusted peer's, or as a hosted
// forward's, served here with the client's own credentials; without a
// cluster the marks grant nothing.
func guardPeers(n *cluster.Node, next http.Handler) http.Handler {
	if n == nil {
		return next
	}
	return n.GuardHosted(n.Guard(next, mirror.WithTrustedPeer), mirror.WithHostedPeer)
}

// runCluster refreshes the members until ctx ends; nothing without a cluster.
func runCluster(ctx context.Context, n *cluster.Node) error {
	if n == nil {
		return nil
	}
	return n.Run(ctx)
}
