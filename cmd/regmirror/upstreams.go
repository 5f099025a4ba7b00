package main

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/regmirror/regmirror/credentials"
	"github.com/regmirror/regmirror/internal/registryhost"
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
// a client names (nil otherwise). Both kinds come from one clientFactory,
// so they log and count alike.
func mirrorRemotes(cfg Config, log *slog.Logger, reg prometheus.Registerer) ([]mirror.Remote, func(string) (mirror.Remote, error), error) {
	ups := cfg.effectiveUpstreams()
	keys, err := upstreamKeychain(ups)
	if err != nil {
		return nil, nil, err
	}
	warnInsecureUpstreams(ups, log)
	clients := clientFactory{log: log, reg: reg, breakerChanged: breakerHook(cfg.notifier)}
	remotes := make([]mirror.Remote, 0, len(ups))
	for _, u := range ups {
		clientCfg := u.clientConfig()
		clientCfg.RedirectHosts = u.RedirectHosts
		client, err := clients.configured(clientCfg, keys)
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
			MaxConcurrentFetches: int(u.MaxConcurrentFetches),
			Allow:                u.Allow,
			Deny:                 u.Deny,
			Visibility:           client,
			Expose:               u.Expose,
		})
	}
	if !cfg.AllowAnyUpstream {
		return remotes, nil, nil
	}
	return remotes, newAnyUpstream(ups, clients).remote, nil
}

// clientFactory makes every upstream client the daemon uses, with the
// same logger, metrics and breaker hook.
type clientFactory struct {
	log            *slog.Logger
	reg            prometheus.Registerer
	breakerChanged func(host string, open bool)
	// transport replaces the clients' own transports, with their address
	// policy; tests set it.
	transport http.RoundTripper
}

// configured makes the client of a registry the operator configured.
func (f clientFactory) configured(cfg upstream.Config, keys authn.Keychain) (*upstream.Client, error) {
	return upstream.New(cfg, keys, f.options())
}

// clientNamed makes the client of a registry a client named: no
// credentials, public addresses only, and series dropped when the mirror
// drops the client (it keeps a bounded number of them). Its breaker sends
// no notifications: a client must not make the mirror's webhooks speak of
// hosts it chose.
func (f clientFactory) clientNamed(host string) (*upstream.Client, error) {
	opts := f.options()
	opts.ForgetMetricsOnClose = true
	opts.BreakerChanged = nil
	return upstream.New(upstream.Config{Host: host, URL: "https://" + host, PublicOnly: true}, nil, opts)
}

func (f clientFactory) options() upstream.Options {
	return upstream.Options{Logger: f.log, Registerer: f.reg, BreakerChanged: f.breakerChanged, Transport: f.transport}
}

// upstreamKeychain gathers the config file's credentials of the mirrored
// registries ups; the keychain adds docker's config.json, credential
// helpers and the environment behind them, for these hosts only.
func upstreamKeychain(ups []UpstreamConfig) (*credentials.Keychain, error) {
	static := map[string]credentials.Static{}
	hosts := make([]string, 0, len(ups))
	for _, u := range ups {
		hosts = append(hosts, u.Host)
		if u.Username == "" {
			continue
		}
		static[u.Host] = credentials.Static{Username: u.Username, Password: u.Password, PasswordFile: u.PasswordFile}
	}
	return credentials.New(credentials.Config{Static: static, Hosts: hosts})
}

// anyUpstream makes the remotes of allow_any_upstream: registries named by
// clients, not by the operator.
type anyUpstream struct {
	clients clientFactory
	// configured are the host names (without ports) of the mirrored
	// registries: named on another port, one of them would escape its own
	// settings (allow, deny, expose).
	configured map[string]bool
}

func newAnyUpstream(ups []UpstreamConfig, clients clientFactory) anyUpstream {
	a := anyUpstream{clients: clients, configured: map[string]bool{}}
	for _, u := range ups {
		a.configured[registryhost.Hostname(u.Host)] = true
	}
	return a
}

// remote makes host's remote without connecting anywhere. Its client has
// no keychain: a host a client names never gets the mirror's credentials,
// from any source, however its name resembles a configured one. It
// reaches only public addresses (upstream.Config.PublicOnly), for the
// registry, its token realm and its blob redirects alike, so whatever a
// client names (ns=localhost:8080, ns=169.254.169.254, a name resolving to
// 10.0.0.1), the mirror never becomes its way into the private network.
// Its metrics are the configured clients': the mirror keeps a bounded
// number of such remotes and closes the ones it drops, which drops their
// series, so hosts chosen by clients do not grow the metrics without bound.
func (a anyUpstream) remote(host string) (mirror.Remote, error) {
	if a.configured[registryhost.Hostname(host)] {
		return mirror.Remote{}, fmt.Errorf("%s is another port of a mirrored registry; list it under upstreams to mirror it", host)
	}
	client, err := a.clients.clientNamed(host)
	if err != nil {
		return mirror.Remote{}, err
	}
	return mirror.Remote{Host: host, Upstream: client, Visibility: client}, nil
}
