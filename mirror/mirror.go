package mirror

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/regmirror/regmirror/internal/fill"
	"github.com/regmirror/regmirror/internal/ociserver"
)

// Default freshness settings of a Remote.
const (
	DefaultTagTTL       = 5 * time.Minute
	DefaultStaleIfError = 7 * 24 * time.Hour
)

// Remote is an upstream registry the mirror serves.
type Remote struct {
	// Host is the registry's name as clients know it, e.g. "docker.io" or "ghcr.io".
	Host string
	// Upstream fetches from the registry.
	Upstream Upstream
	// TagTTL is how long a tag is answered from the cache without asking the
	// upstream. Zero means DefaultTagTTL; negative means always revalidate.
	TagTTL time.Duration
	// StaleIfError is how long past its TTL a cached tag may still be served
	// while the upstream fails. Zero means DefaultStaleIfError; negative means never.
	StaleIfError time.Duration
	// NotFoundTTL is how long an upstream 404 for a tag or manifest is
	// remembered and answered without asking again. Zero means
	// DefaultNotFoundTTL; negative means not at all.
	NotFoundTTL time.Duration
	// NoStaleOnNotFound passes an upstream 404 for a cached tag on to
	// clients. By default the tag is served stale, like on any other upstream
	// failure, so that images deleted upstream keep working.
	NoStaleOnNotFound bool
	// BackgroundRefresh revalidates recently pulled tags shortly before
	// their TTL ends (see Mirror.Run), so pulls of hot tags never wait on
	// the upstream.
	BackgroundRefresh bool
	// MaxConcurrentFetches caps this upstream's requests in flight (a blob
	// download counts until its body is closed); further ones wait for a
	// slot instead of failing. Zero means DefaultMaxConcurrentFetches;
	// negative means no cap.
	MaxConcurrentFetches int
	// Allow, when not empty, lists the repositories (globs on the path on
	// Host, e.g. "library/*" or "org/**") that may be pulled; Deny lists
	// those that may not, and wins. A refused pull touches neither the cache
	// nor the upstream.
	Allow, Deny []string
	// Visibility, when set, tells which repositories the upstream serves
	// without credentials. A repository that only the mirror's own
	// credentials can read is then refused to clients that did not
	// authenticate to the mirror, unless Expose lists it. Nil serves every
	// repository: right when the mirror has no credentials for the upstream.
	Visibility Visibility
	// Expose lists repositories (globs, like Allow) served to every client
	// even when they are not public upstream.
	Expose []string
}

// Options configure a Mirror. Cache and at least one Remote are required.
type Options struct {
	Cache   Cache
	Remotes []Remote
	// NewRemote, when set, makes the Remote for a registry host that has
	// none in Remotes, the first time a client names it; the mirror keeps
	// the most recently used ones. It must not block: no connection is
	// needed to make a Remote. An error refuses the request. When nil,
	// such hosts are refused.
	NewRemote func(host string) (Remote, error)
	// DefaultHost is the registry of names without a host prefix or ns
	// parameter; empty means docker.io, which is what dockerd sends.
	DefaultHost string
	Logger      *slog.Logger
	// Registerer receives the mirror's metrics; nil registers none.
	Registerer prometheus.Registerer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// FillTimeout bounds an upstream manifest fetch that clients share; it runs
	// detached from any one client so that a hang-up does not fail the others.
	// Zero means two minutes.
	FillTimeout time.Duration
	// SendTimeout bounds each write of a blob to a client: a client that
	// takes longer to accept one chunk (128 KiB) is disconnected, so a
	// stuck or trickling client cannot hold a connection, a goroutine and a
	// file open forever. The download it shared goes on for the others.
	// Zero means DefaultSendTimeout.
	SendTimeout time.Duration
	// MissLimits bound the requests that clients make the mirror pass on
	// to upstreams; zero values mean the defaults.
	MissLimits MissLimits
	// Hosted, when set, adds hosted repositories: pushes to the mirror's own
	// URL, served first to pulls of their names. Nil means pulls only.
	Hosted *HostedOptions
	// Events, when set, hears of pushes, deletes and cold pulls, for
	// webhooks. Nil reports nothing.
	Events Events
	// Inventory, when set, lists the store's content for the catalog, the
	// v1 search, the repository API and tag listings while an upstream is
	// down. Nil lists hosted repositories only, in the catalog.
	Inventory Inventory
	// Peers, when set, makes this mirror a replica of a cluster: a blob
	// that another replica owns is downloaded from that replica, which
	// alone asks the upstream for it. Nil fetches every miss from the
	// upstream.
	Peers Peers
	// Bucket, when set, is the blob store the replicas share: blobs the
	// cache misses are read from it before the owner or the upstream,
	// and the one download of a blob from the upstream takes its lease
	// there first. Nil: no shared bucket.
	Bucket Bucket
	// HostedOwners, when set in a cluster with Hosted, gives each hosted
	// repository one owner replica, to which the others pass its
	// requests. Nil serves every hosted repository from this replica.
	HostedOwners HostedOwners
}

// Mirror serves the OCI distribution API: pulls from a cache that fills
// itself from upstream registries and, with Options.Hosted, pushes to hosted
// repositories. It is safe for concurrent use.
type Mirror struct {
	cache       Cache
	remotes     atomic.Pointer[remoteTable] // routing; SetRemotes swaps it whole
	defaultHost string
	log         *slog.Logger
	now         func() time.Time
	fillTimeout time.Duration
	metrics     *metrics
	recent      pullLog // the latest pulls, for RecentPulls
	// manifestFills coalesces concurrent upstream lookups of one manifest,
	// tag or referrers listing; its fills run without the client's rights.
	manifestFills fill.Group[string, manifest]
	// confirms coalesces downloads that prove an upstream has a blob.
	confirms fill.Group[string, struct{}]
	handler  http.Handler
	server   *ociserver.Server // the distribution API over the composed backend
	hosted   *hostedRepos      // nil without Options.Hosted
	// inventory lists the store's content; nil without Options.Inventory.
	inventory Inventory

	// notFound remembers upstream 404s; hot remembers pulled tags for
	// background refresh.
	notFound notFoundCache
	hot      hotTags
	// exposure remembers which upstream repositories are public.
	exposure visibilityCache

	misses *missLimiter
	events Events // nil: none
	peers  Peers  // nil: not in a cluster
	bucket Bucket // nil: no shared bucket
	// hostedOwners passes hosted requests to their owner; nil: not in a cluster.
	hostedOwners HostedOwners
}

// New returns a Mirror for opts.
func New(opts Options) (*Mirror, error) {
	if opts.Cache == nil {
		return nil, errors.New("mirror: a cache is required")
	}
	m := &Mirror{
		cache:       opts.Cache,
		defaultHost: canonicalHost(opts.DefaultHost),
		log:         opts.Logger,
		now:         opts.Now,
		fillTimeout: opts.FillTimeout,
		events:      opts.Events,
		inventory:   opts.Inventory,
		peers:       opts.Peers,
		bucket:      opts.Bucket,

		hostedOwners: opts.HostedOwners,
	}
	if m.defaultHost == "" {
		m.defaultHost = dockerHub
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.fillTimeout == 0 {
		m.fillTimeout = 2 * time.Minute
	}
	m.misses = newMissLimiter(opts.MissLimits, m.now)
	// Fills outlive the request that started them and serve others too:
	// none may add to that request's headers, and a manifest fill must
	// decide nothing with the rights of its client.
	m.manifestFills.Detach = func(ctx context.Context) context.Context {
		return withoutClient(ociserver.WithoutWarnings(context.WithoutCancel(ctx)))
	}
	m.confirms.Detach = detachRequest
	m.exposure.asking.Detach = detachRequest
	var err error
	if m.metrics, err = newMetrics(opts.Registerer); err != nil {
		return nil, fmt.Errorf("mirror: %w", err)
	}
	table, err := newRemoteTable(opts.Remotes, opts.NewRemote, m.metrics)
	if err != nil {
		return nil, fmt.Errorf("mirror: %w", err)
	}
	m.remotes.Store(table)
	if opts.Hosted != nil {
		if m.hosted, err = newHostedRepos(opts.Hosted, m.defaultHost, m.now, m.log); err != nil {
			return nil, fmt.Errorf("mirror: %w", err)
		}
	}
	m.server = ociserver.New(m.newBackend(), ociserver.Options{
		SendTimeout: opts.SendTimeout,
		OnRequest:   func(ctx context.Context, req request) { noteKind(ctx, req.Kind) },
		OnError:     noteError,
		BlobBytesSent: func(source string, n int64) {
			m.metrics.bytesServed.WithLabelValues(source).Add(float64(n))
		},
	})
	m.handler = m.accessLog(http.HandlerFunc(m.serve))
	return m, nil
}

// detachRequest is ctx for work that outlives its request: see New.
func detachRequest(ctx context.Context) context.Context {
	return ociserver.WithoutWarnings(context.WithoutCancel(ctx))
}

// ServeHTTP implements http.Handler.
func (m *Mirror) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.handler.ServeHTTP(w, r)
}

func (m *Mirror) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	r = r.WithContext(withEventRequest(withClientAddr(m.withClient(r.Context(), r), r), r))
	if err := m.serveOutsideAPI(w, r); err != nil {
		noteError(r.Context(), err)
		writeError(w, r, err)
	}
}

// serveOutsideAPI answers what the protocol server does not: the token
// endpoint, the inventory API and v1 search, and the ping when logins are
// on (it challenges clients to log in). Everything else goes to the server.
func (m *Mirror) serveOutsideAPI(w http.ResponseWriter, r *http.Request) error {
	if m.hosted != nil && r.URL.Path == tokenPath {
		return m.hosted.serveToken(w, r)
	}
	if handled, err := m.serveInventoryAPI(w, r); handled {
		return err
	}
	if m.hosted != nil && (r.URL.Path == "/v2/" || r.URL.Path == "/v2") && isReadMethod(r.Method) {
		return m.hosted.serveBase(w, r)
	}
	if forwarded, err := m.forwardHosted(w, r); forwarded {
		return err
	}
	m.server.ServeHTTP(w, r)
	return nil
}

// newBackend composes what the protocol server answers from: the proxy
// behind its upstreams' allow, deny and exposure policies, read-only, and
// with hosted repositories a group of both, hosted first, behind the
// authorizer.
func (m *Mirror) newBackend() ociserver.Backend {
	proxied := readOnly{pullPolicy{
		Reader: pullPolicy{Reader: proxy{m}, check: m.checkExposure},
		check:  m.checkAllowed,
	}}
	if m.hosted == nil {
		return proxied
	}
	hosted := hostedBackend{m}
	return authorizer{Backend: group{Writer: hosted, m: m, hosted: hosted, proxy: proxied}, m: m}
}

// remoteFor routes a pull to its upstream registry; the policies in
// front of the proxy have checked it.
func (m *Mirror) remoteFor(ctx context.Context, repo ociserver.Repo) (*Remote, target, error) {
	_, rt, err := m.routeOf(ctx, repo)
	return rt.rem, rt.t, err
}

func (r *Remote) tagTTL() time.Duration {
	switch {
	case r.TagTTL == 0:
		return DefaultTagTTL
	case r.TagTTL < 0:
		return 0
	}
	return r.TagTTL
}

func (r *Remote) staleIfError() time.Duration {
	switch {
	case r.StaleIfError == 0:
		return DefaultStaleIfError
	case r.StaleIfError < 0:
		return 0
	}
	return r.StaleIfError
}
