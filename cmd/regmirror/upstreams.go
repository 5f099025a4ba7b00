package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/regmirror/regmirror/credentials"
	"github.com/regmirror/regmirror/mirror"
	"github.com/regmirror/regmirror/upstream"
)

// wellKnownRegistries are the public registries mirrored without any
// configuration (unless listed_upstreams_only is set), anonymously unless
// docker's config.json or the environment has credentials for them. Their
// URLs are also what "host:" alone implies in the upstreams list.
var wellKnownRegistries = []UpstreamConfig{
	{Host: "docker.io", URL: "https://registry-1.docker.io"},
	{Host: "ghcr.io", URL: "https://ghcr.io"},
	{Host: "quay.io", URL: "https://quay.io"},
	{Host: "gcr.io", URL: "https://gcr.io"},
	{Host: "registry.k8s.io", URL: "https://registry.k8s.io"},
	{Host: "mcr.microsoft.com", URL: "https://mcr.microsoft.com"},
	{Host: "public.ecr.aws", URL: "https://public.ecr.aws"},
	{Host: "registry.gitlab.com", URL: "https://registry.gitlab.com"},
}

// wellKnownURL is the endpoint of a well-known registry, or "".
func wellKnownURL(host string) string {
	for _, r := range wellKnownRegistries {
		if r.Host == host {
			return r.URL
		}
	}
	return ""
}

// effectiveUpstreams are the registries mirrored from the start: the
// listed ones, then the well-known ones not listed (unless only listed
// ones are wanted). Listed settings win over the built-in ones.
func (c Config) effectiveUpstreams() []UpstreamConfig {
	ups := append([]UpstreamConfig(nil), c.Upstreams...)
	if c.ListedUpstreamsOnly {
		return ups
	}
	listed := map[string]bool{}
	for _, u := range c.Upstreams {
		listed[strings.ToLower(u.Host)] = true
	}
	for _, r := range wellKnownRegistries {
		if !listed[r.Host] {
			ups = append(ups, r)
		}
	}
	return ups
}

// mirrorRemotes builds an upstream client for every mirrored registry and,
// with allow_any_upstream, the function that makes one for any other host
// a client names (nil otherwise).
func mirrorRemotes(cfg Config, log *slog.Logger, reg prometheus.Registerer) ([]mirror.Remote, func(string) (mirror.Remote, error), error) {
	keys, err := upstreamKeychain(cfg.Upstreams)
	if err != nil {
		return nil, nil, err
	}
	ups := cfg.effectiveUpstreams()
	remotes := make([]mirror.Remote, 0, len(ups))
	for _, u := range ups {
		client, err := upstream.New(u.clientConfig(), keys, upstream.Options{Logger: log, Registerer: reg})
		if err != nil {
			return nil, nil, fmt.Errorf("upstream %s: %w", u.Host, err)
		}
		remotes = append(remotes, mirror.Remote{
			Host:                 u.Host,
			Upstream:             client,
			TagTTL:               u.TagTTL,
			StaleIfError:         u.staleIfError(),
			NotFoundTTL:          u.notFoundTTL(),
			NoStaleOnNotFound:    u.noStaleOnNotFound(),
			BackgroundRefresh:    u.BackgroundRefresh,
			MaxConcurrentFetches: u.MaxConcurrentFetches,
			Allow:                u.Allow,
			Deny:                 u.Deny,
			Visibility:           client,
			Expose:               u.Expose,
		})
	}
	if !cfg.AllowAnyUpstream {
		return remotes, nil, nil
	}
	return remotes, anyUpstream{keys: keys, log: log}.remote, nil
}

// upstreamKeychain gathers the config file's credentials; the keychain adds
// docker's config.json, credential helpers and the environment behind them.
func upstreamKeychain(ups []UpstreamConfig) (*credentials.Keychain, error) {
	static := map[string]credentials.Static{}
	for _, u := range ups {
		if u.Username == "" {
			continue
		}
		static[u.Host] = credentials.Static{Username: u.Username, Password: u.Password, PasswordFile: u.PasswordFile}
	}
	return credentials.New(credentials.Config{Static: static})
}

// anyUpstream makes the remotes of allow_any_upstream: registries named by
// clients, not by the operator.
type anyUpstream struct {
	keys *credentials.Keychain
	log  *slog.Logger
}

// remote makes host's remote without connecting anywhere. Its client gets
// no metrics registerer: hosts chosen by clients must not grow the
// metrics without bound (the mirror's own per-upstream series are dropped
// with the remote).
func (a anyUpstream) remote(host string) (mirror.Remote, error) {
	client, err := upstream.New(upstream.Config{Host: host, URL: "https://" + host}, a.keys,
		upstream.Options{Logger: a.log, Transport: publicOnlyTransport()})
	if err != nil {
		return mirror.Remote{}, err
	}
	return mirror.Remote{Host: host, Upstream: client, Visibility: client}, nil
}

// publicOnlyTransport is the transport of allow_any_upstream registries. Its
// dialer refuses every address that is not public, after DNS resolution,
// for the registry, its token realm and its blob redirects alike: whatever
// a client names (ns=localhost:8080, ns=169.254.169.254, a name resolving
// to 10.0.0.1), the mirror never becomes its way into the private network.
// It dials directly, ignoring HTTPS_PROXY, whose address is usually private.
func publicOnlyTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	t.DialContext = (&net.Dialer{
		Timeout:   upstream.DefaultDialTimeout,
		KeepAlive: 30 * time.Second,
		Control:   refuseNonPublic,
	}).DialContext
	t.ResponseHeaderTimeout = upstream.DefaultResponseHeaderTimeout
	t.MaxIdleConnsPerHost = 32
	return t
}

// errNotPublic is returned by dials that refuseNonPublic stops.
var errNotPublic = errors.New("not a public address; list this registry under upstreams to mirror it")

// sharedAddressSpace is 100.64.0.0/10 (RFC 6598), carrier-grade NAT: not
// global, yet not covered by netip's IsPrivate.
var sharedAddressSpace = netip.MustParsePrefix("100.64.0.0/10")

// refuseNonPublic is a net.Dialer Control function that lets only global
// unicast addresses outside the private ranges through.
func refuseNonPublic(_, address string, _ syscall.RawConn) error {
	hostPort, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("dialing %s: %w", address, err)
	}
	ip := hostPort.Addr().Unmap()
	if !ip.IsGlobalUnicast() || ip.IsPrivate() || sharedAddressSpace.Contains(ip) {
		return fmt.Errorf("dialing %s: %w", ip, errNotPublic)
	}
	return nil
}
