package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Resolver looks up the addresses of a host name. *net.Resolver is one.
type Resolver interface {
	LookupHost(ctx context.Context, host string) (addrs []string, err error)
}

var _ Resolver = (*net.Resolver)(nil)

// DefaultInterval is how often Peers.Run resolves the DNS name when the
// configuration leaves it zero.
const DefaultInterval = 30 * time.Second

// lookupTimeout bounds one resolution, so that a DNS server that does not
// answer delays the next one by no more than this.
const lookupTimeout = 10 * time.Second

// Config says who the peers are: a static list (URLs) or a DNS name
// resolved on an interval (DNSName and Port), never both. Its zero value
// but Self is a cluster of one.
type Config struct {
	// Self is this replica's base URL as its peers reach it, such as
	// http://10.0.0.1:5000. With a DNS name it must be the URL the name's
	// address for this replica gives (http://<pod IP>:<Port>).
	Self string
	// URLs are the base URLs of the replicas. Self may be among them.
	URLs []string
	// DNSName resolves to one address per replica, as a Kubernetes
	// headless Service does.
	DNSName string
	// Port is the port the replicas listen on; required with DNSName.
	Port int
	// Scheme is http (the default) or https, with DNSName.
	Scheme string
	// Interval is how often DNSName is resolved again; zero means
	// DefaultInterval.
	Interval time.Duration
	// Resolver resolves DNSName; nil means net.DefaultResolver.
	Resolver Resolver
	// Logger receives a warning when a resolution fails; nil discards.
	Logger *slog.Logger
}

// Peers is the membership of the cluster: this replica and the others.
// It is safe for concurrent use; Snapshot and Owner never block on a
// resolution in progress.
type Peers struct {
	self     Peer
	dnsName  string
	port     string
	scheme   string
	interval time.Duration
	resolver Resolver
	log      *slog.Logger

	// members is sorted by URL, always holds self, and is replaced whole,
	// never changed in place.
	members atomic.Pointer[[]Peer]
}

// New returns the membership that cfg describes. With a DNS name the
// members are only Self until the first resolution (Refresh, or Run).
func New(cfg Config) (*Peers, error) {
	self, err := ParsePeer(cfg.Self)
	if err != nil {
		return nil, fmt.Errorf("cluster self: %w", err)
	}
	p := &Peers{self: self, log: cfg.Logger, resolver: cfg.Resolver, interval: cfg.Interval}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if cfg.DNSName != "" && len(cfg.URLs) > 0 {
		return nil, errors.New("cluster: give either peer URLs or a DNS name, not both")
	}
	members := []Peer{self}
	if cfg.DNSName != "" {
		if err := p.setDNS(cfg); err != nil {
			return nil, err
		}
	}
	for _, raw := range cfg.URLs {
		peer, err := ParsePeer(raw)
		if err != nil {
			return nil, fmt.Errorf("cluster peers: %w", err)
		}
		members = append(members, peer)
	}
	p.setMembers(members)
	return p, nil
}

func (p *Peers) setDNS(cfg Config) error {
	if cfg.Port <= 0 || cfg.Port > 65535 {
		return fmt.Errorf("cluster DNS name %s: port %d out of range", cfg.DNSName, cfg.Port)
	}
	if cfg.Interval < 0 {
		return fmt.Errorf("cluster DNS name %s: negative interval %s", cfg.DNSName, cfg.Interval)
	}
	p.dnsName, p.port, p.scheme = cfg.DNSName, strconv.Itoa(cfg.Port), cfg.Scheme
	switch p.scheme {
	case "":
		p.scheme = "http"
	case "http", "https":
	default:
		return fmt.Errorf("cluster DNS name %s: scheme %q is not http or https", cfg.DNSName, cfg.Scheme)
	}
	if p.interval == 0 {
		p.interval = DefaultInterval
	}
	if p.resolver == nil {
		p.resolver = net.DefaultResolver
	}
	return nil
}

// Self is this replica.
func (p *Peers) Self() Peer { return p.self }

// Snapshot returns the current members sorted by URL, this replica
// included. The slice is the caller's.
func (p *Peers) Snapshot() []Peer { return slices.Clone(*p.members.Load()) }

// isMember reports whether peer is one of the current members.
func (p *Peers) isMember(peer Peer) bool { return slices.Contains(*p.members.Load(), peer) }

// Refresh resolves the DNS name once and makes its addresses, with this
// replica, the members. When the lookup fails or finds no address it
// returns the error and keeps the members it had: a DNS outage must not
// make every replica its own owner. Without a DNS name it does nothing.
func (p *Peers) Refresh(ctx context.Context) error {
	if p.dnsName == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	addrs, err := p.resolver.LookupHost(ctx, p.dnsName)
	if err != nil {
		return fmt.Errorf("resolve cluster peers %s: %w", p.dnsName, err)
	}
	if len(addrs) == 0 {
		return fmt.Errorf("resolve cluster peers %s: no address", p.dnsName)
	}
	members := []Peer{p.self}
	for _, addr := range addrs {
		members = append(members, peerAt(p.scheme, addr, p.port))
	}
	p.setMembers(members)
	return nil
}

// Run resolves the DNS name now and then every interval until ctx is
// done, logging the failures Refresh reports, and returns nil then.
// Without a DNS name it returns at once. It belongs in the daemon's
// errgroup.
func (p *Peers) Run(ctx context.Context) error {
	if p.dnsName == "" {
		return nil
	}
	ticker := time.NewTicker(p.interval)
	defer ticker.Stop()
	for {
		if err := p.Refresh(ctx); err != nil && ctx.Err() == nil {
			p.log.Warn("cluster peers not re-resolved; keeping the last members",
				"name", p.dnsName, "members", len(*p.members.Load()), "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

// setMembers publishes members sorted and without duplicates.
func (p *Peers) setMembers(members []Peer) {
	slices.SortFunc(members, func(a, b Peer) int { return strings.Compare(a.URL, b.URL) })
	members = slices.Compact(members)
	p.members.Store(&members)
}
