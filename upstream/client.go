package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"
)

// Defaults for the zero values of Config. They are short because a mirror
// serves most pulls from its cache: a client should get a stale answer
// within seconds, not wait out a dead upstream.
const (
	// DefaultDialTimeout allows one lost SYN (retransmitted after 1s) and
	// a slow TLS handshake; a healthy registry connects in well under a second.
	DefaultDialTimeout = 3 * time.Second
	// DefaultResponseHeaderTimeout is generous for a registry's first byte,
	// which normally arrives within a few hundred milliseconds.
	DefaultResponseHeaderTimeout = 5 * time.Second
	// DefaultTimeout leaves room for a slow token handshake and one retry,
	// and still never keeps a client waiting long.
	DefaultTimeout = 10 * time.Second
	DefaultRetries = 2
)

// Retry backoff: the first retry waits firstBackoff, each next one twice as
// long, never more than maxBackoff.
const (
	firstBackoff = 100 * time.Millisecond
	maxBackoff   = 2 * time.Second
)

// Config describes one upstream registry. Zero durations, retries and
// breaker settings mean the defaults.
type Config struct {
	// Host names the registry for credentials, metrics and errors, e.g.
	// "docker.io"; empty means the URL's host.
	Host string
	// URL is where the registry's API is, e.g. "https://registry-1.docker.io".
	// http:// is allowed (tests use loopback).
	URL string
	// DialTimeout bounds connecting (TCP and TLS); ResponseHeaderTimeout
	// bounds waiting for response headers (not bodies). Both apply to the
	// default transport only.
	DialTimeout, ResponseHeaderTimeout time.Duration
	// Timeout bounds a whole metadata operation (manifest HEAD or GET, one
	// page of tags), including the token handshake and retries, so that an
	// upstream that accepts connections and never answers costs at most
	// this long. Blob downloads are bounded per attempt by the two above.
	Timeout time.Duration
	// Retries is how often a request failing temporarily is retried; zero
	// means DefaultRetries, negative means never.
	Retries int
	// The circuit breaker skips the upstream for BreakerCooldown, then
	// lets one probe through, when BreakerThreshold operations in a row
	// got no answer at all (refused, DNS failure, timeout), or when at
	// least BreakerFailureRatio of the operations of the last
	// BreakerWindow failed (no answer, 5xx, 408), once the window holds
	// BreakerMinRequests of them. Zero means the defaults; a negative
	// threshold disables the breaker.
	BreakerThreshold    int
	BreakerCooldown     time.Duration
	BreakerWindow       time.Duration
	BreakerMinRequests  int
	BreakerFailureRatio float64
	// AuthHosts are host names, besides the registry's own, that may
	// receive the registry's credentials: its token service, when a bearer
	// challenge names a realm elsewhere (Docker Hub's auth.docker.io and a
	// few others are known). Credentials are withheld from any other host.
	AuthHosts []string
	// RedirectHosts are host names, besides the registry's own and its
	// AuthHosts, that the registry may send the client to even when they
	// resolve to private addresses: an on-premises registry's blob
	// storage. Any other host it redirects to, or names as its token
	// realm, is reached only at public addresses (PublicAddress), checked
	// after DNS on every connection.
	RedirectHosts []string
	// PublicOnly holds the registry's own host to public addresses too,
	// and ignores HTTPS_PROXY: for registries that clients name rather
	// than the operator, which must not become a client's way into the
	// mirror's private network. The TLS and proxy settings below do not
	// apply to it.
	PublicOnly bool
	// TLS settings of the connections to the registry (see tls.go).
	TLS TLSConfig
	// Proxy, when set, is an http:// or https:// proxy that every request
	// to the registry and the hosts it sends the client to goes through
	// (CONNECT for https), in place of HTTPS_PROXY and NO_PROXY.
	Proxy string
}

// Options are the client's collaborators; every field may be nil.
type Options struct {
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Transport replaces the default HTTP transports underneath auth for
	// every host, and with them the address policy of Config.RedirectHosts
	// and Config.PublicOnly, which lives in their dialers. Tests set it.
	Transport http.RoundTripper
	// Now is the clock of the circuit breaker and of rate-limit pauses;
	// nil means time.Now.
	Now func() time.Time
	// BreakerChanged, when set, hears when the circuit breaker opens
	// (open true: it was closed) and when it closes again, with the
	// registry's Host; not of the probes between. It is called on the
	// request path and must return at once.
	BreakerChanged func(host string, open bool)
	// ForgetMetricsOnClose makes Close drop the client's series from the
	// shared metrics: for clients made on demand for hosts that clients
	// name (allow_any_upstream), which come and go, so that the series
	// stay bounded by how many such clients are kept at once.
	ForgetMetricsOnClose bool
}

// Client talks to one upstream registry. It is safe for concurrent use;
// create one per registry and share it.
type Client struct {
	host string
	// base is the registry's scheme and host; registry is the same host for
	// ggcr's transport; keyTarget is Host, under which credentials are found.
	base      *url.URL
	registry  name.Registry
	keyTarget name.Registry
	keys      authn.Keychain
	// http is the transport under auth: metrics and user agent over the
	// configured or default transport (idle is that one).
	http             http.RoundTripper
	idle             interface{ CloseIdleConnections() }
	retries          int
	timeout          time.Duration
	handshakeTimeout time.Duration
	log              *slog.Logger
	series           *hostSeries // the client's metrics
	now              func() time.Time
	breakerHook      func(host string, open bool) // nil: none
	// forgetMetrics is Options.ForgetMetricsOnClose.
	forgetMetrics bool
	// sleep waits out a retry backoff; tests replace it to stay fast.
	sleep func(ctx context.Context, d time.Duration) error
	// breaker skips the upstream after repeated failures; limit pauses it
	// after a 429.
	breaker *breaker
	limit   *rateLimit

	// transports holds the authenticated transports (tokens) of the
	// repositories used last; only successful handshakes are kept.
	transports *transportCache
	handshakes singleflight.Group
}

// New returns a client for the registry cfg describes, authenticating with
// the credentials keys has for cfg.Host (nil keys means anonymous).
func New(cfg Config, keys authn.Keychain, opts Options) (*Client, error) {
	cfg, base, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	nameOpts := []name.Option{name.WeakValidation}
	if base.Scheme == "http" {
		nameOpts = append(nameOpts, name.Insecure)
	}
	registry, err := name.NewRegistry(base.Host, nameOpts...)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", cfg.Host, err)
	}
	keyTarget, err := name.NewRegistry(cfg.Host, name.WeakValidation)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: host: %w", cfg.Host, err)
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	if keys == nil {
		keys = authn.NewMultiKeychain()
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	inner := opts.Transport
	if inner == nil {
		if inner, err = defaultTransports(cfg, base, clientCertChanged(log, cfg.Host)); err != nil {
			return nil, fmt.Errorf("upstream %s: %w", cfg.Host, err)
		}
	}
	idle, _ := inner.(interface{ CloseIdleConnections() })
	inner = &explainTLS{inner: inner, tls: cfg.TLS}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	c := &Client{
		host:             cfg.Host,
		base:             base,
		registry:         registry,
		keyTarget:        keyTarget,
		keys:             keys,
		idle:             idle,
		retries:          cfg.Retries,
		timeout:          cfg.Timeout,
		handshakeTimeout: 2 * (cfg.DialTimeout + cfg.ResponseHeaderTimeout),
		log:              log,
		series:           &hostSeries{metrics: m, host: cfg.Host},
		now:              now,
		breakerHook:      opts.BreakerChanged,
		forgetMetrics:    opts.ForgetMetricsOnClose,
		sleep:            sleepContext,
		limit:            &rateLimit{},
		transports:       newTransportCache(maxCachedTransports),
	}
	c.breaker = newBreaker(cfg, now, c.breakerChanged)
	c.http = transport.NewUserAgent(&instrumented{
		inner: &watchRateLimit{
			inner:  &fixedScheme{inner: newCredentialGuard(inner, base.Host, cfg.Host, cfg.AuthHosts), host: base.Host, scheme: base.Scheme},
			now:    now,
			paused: c.rateLimited,
			limit:  c.limit,
		},
		series: c.series,
	}, "regmirror")
	m.breakerState.WithLabelValues(cfg.Host).Set(float64(closed))
	return c, nil
}

// validate fills in defaults and parses the URL.
func (cfg Config) validate() (Config, *url.URL, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return cfg, nil, fmt.Errorf("upstream %s: URL: %w", cfg.Host, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return cfg, nil, fmt.Errorf("upstream %s: URL %q: scheme must be http or https", cfg.Host, cfg.URL)
	case u.Host == "":
		return cfg, nil, fmt.Errorf("upstream %s: URL %q has no host", cfg.Host, cfg.URL)
	case u.User != nil:
		// Never echo the URL here: it holds a secret.
		return cfg, nil, fmt.Errorf("upstream %s: URL must not contain credentials; configure them separately", cfg.Host)
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.Fragment != "":
		return cfg, nil, fmt.Errorf("upstream %s: URL %q must be scheme://host[:port] only", cfg.Host, cfg.URL)
	}
	if cfg.Host == "" {
		cfg.Host = u.Host
	}
	if _, err := cfg.proxyURL(); err != nil {
		return cfg, nil, fmt.Errorf("upstream %s: %w", cfg.Host, err)
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.ResponseHeaderTimeout <= 0 {
		cfg.ResponseHeaderTimeout = DefaultResponseHeaderTimeout
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.BreakerThreshold == 0 {
		cfg.BreakerThreshold = DefaultBreakerThreshold
	}
	if cfg.BreakerCooldown <= 0 {
		cfg.BreakerCooldown = DefaultBreakerCooldown
	}
	if cfg.BreakerWindow <= 0 {
		cfg.BreakerWindow = DefaultBreakerWindow
	}
	// The window is counted in slices of a tenth; keep them non-zero.
	cfg.BreakerWindow = max(cfg.BreakerWindow, breakerBuckets*time.Millisecond)
	if cfg.BreakerMinRequests <= 0 {
		cfg.BreakerMinRequests = DefaultBreakerMinRequests
	}
	if cfg.BreakerFailureRatio <= 0 || cfg.BreakerFailureRatio > 1 {
		cfg.BreakerFailureRatio = DefaultBreakerFailureRatio
	}
	switch {
	case cfg.Retries == 0:
		cfg.Retries = DefaultRetries
	case cfg.Retries < 0:
		cfg.Retries = 0
	}
	return cfg, &url.URL{Scheme: u.Scheme, Host: u.Host}, nil
}

// proxyURL is Config.Proxy parsed; nil when there is none.
func (cfg Config) proxyURL() (*url.URL, error) {
	if cfg.Proxy == "" {
		return nil, nil
	}
	return ParseProxy(cfg.Proxy)
}

// ParseProxy parses a proxy URL as Config.Proxy takes it:
// http://host[:port] or https://host[:port], with user info for a proxy
// that wants a login. Its errors never repeat the password.
func ParseProxy(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse's error repeats the URL, and with it a password.
		return nil, errors.New("proxy: not a URL")
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("proxy %q must be http://host:port or https://host:port", u.Redacted())
	}
	return u, nil
}

// clientCertChanged logs how a reload of a client certificate, started
// by a change of its files, ended.
func clientCertChanged(log *slog.Logger, host string) func(error) {
	return func(err error) {
		if err != nil {
			log.Error("upstream client certificate changed but does not load: the one in use stays", "upstream", host, "err", err)
			return
		}
		log.Info("upstream client certificate reloaded", "upstream", host)
	}
}

// fixedScheme sends every request for the registry's host with the
// configured scheme. ggcr's ping otherwise races https against http for
// local and insecure registries, and an https hello to a plain-http server
// hangs until ggcr's fallback timer fires: a fixed delay on every handshake.
type fixedScheme struct {
	inner        http.RoundTripper
	host, scheme string
}

func (t *fixedScheme) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Host == t.host && req.URL.Scheme != t.scheme {
		req = req.Clone(req.Context())
		req.URL.Scheme = t.scheme
	}
	return t.inner.RoundTrip(req)
}

// Host is the configured registry host.
func (c *Client) Host() string { return c.host }

// Close releases idle connections and, with Options.ForgetMetricsOnClose,
// drops the client's series. The client stays usable.
func (c *Client) Close() {
	if c.idle != nil {
		c.idle.CloseIdleConnections()
	}
	if c.forgetMetrics {
		c.series.forget()
	}
}

// transportFor returns repo's authenticated transport, doing the ping and
// token handshake on first use. Concurrent first uses share one handshake;
// a failed handshake is not remembered, so the next call tries again.
func (c *Client) transportFor(ctx context.Context, repo string) (http.RoundTripper, error) {
	if rt := c.cachedTransport(repo); rt != nil {
		return rt, nil
	}
	ch := c.handshakes.DoChan(repo, func() (any, error) {
		if rt := c.cachedTransport(repo); rt != nil {
			return rt, nil
		}
		// Every waiter shares this handshake, so the first caller's
		// cancellation must not fail the others.
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.handshakeTimeout)
		defer cancel()
		rt, err := c.authenticate(hctx, repo)
		if err != nil {
			return nil, err
		}
		c.transports.put(repo, rt)
		return rt, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(http.RoundTripper), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *Client) cachedTransport(repo string) http.RoundTripper {
	return c.transports.get(repo)
}

// errCredentials marks failures to look up credentials: retrying won't help.
var errCredentials = errors.New("resolving credentials")

// authenticate pings the registry and fetches a pull token for repo.
// ggcr's bearer transport then reuses that token and fetches a new one
// only when the registry answers 401 (expired token).
func (c *Client) authenticate(ctx context.Context, repo string) (http.RoundTripper, error) {
	auth, err := authn.Resolve(ctx, c.keys, c.keyTarget.Repo(repo))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errCredentials, err)
	}
	scope := "repository:" + repo + ":pull"
	rt, err := transport.NewWithContext(ctx, c.registry, auth, c.http, []string{scope})
	if err != nil {
		return nil, err
	}
	c.log.DebugContext(ctx, "authenticated to upstream", "upstream", c.host, "repo", repo, "anonymous", auth == authn.Anonymous)
	return rt, nil
}

// retry runs one operation: unless the upstream is paused or its breaker
// is open, it runs attempt until it succeeds, fails permanently, or the
// retries are used up, and tells the breaker how it went. Only idempotent
// requests come through here.
func (c *Client) retry(ctx context.Context, o opError, attempt func(context.Context) error) error {
	probe, err := c.admit(o)
	if err != nil {
		return err
	}
	err = c.attempts(ctx, o, attempt)
	c.breaker.record(probe, outcomeOf(err))
	return err
}

// admit refuses an operation while the upstream is paused after a 429 or
// its breaker is open; probe is the breaker's (see breaker.admit).
func (c *Client) admit(o opError) (probe bool, err error) {
	if until, paused := c.limit.pausedUntil(c.now()); paused {
		c.series.record(func(m *metrics, host string) { m.skipped.WithLabelValues(host, "rate_limited").Inc() })
		return false, o.skipped(http.StatusTooManyRequests, "TOOMANYREQUESTS", ErrRateLimited, until)
	}
	probe, until, err := c.breaker.admit()
	if err != nil {
		c.series.record(func(m *metrics, host string) { m.skipped.WithLabelValues(host, "circuit_open").Inc() })
		return false, o.skipped(0, "UNAVAILABLE", err, until)
	}
	return probe, nil
}

// attempts runs attempt, retrying temporary failures with backoff. A 429 is
// not retried: the upstream said when to come back, and it is paused till then.
func (c *Client) attempts(ctx context.Context, o opError, attempt func(context.Context) error) error {
	for n := 0; ; n++ {
		err := attempt(ctx)
		if err == nil {
			return nil
		}
		delay := backoff(n)
		if n >= c.retries || !isTemporary(err) || statusOf(err) == http.StatusTooManyRequests || !fitsDeadline(ctx, delay) {
			c.series.record(func(m *metrics, host string) { m.errors.WithLabelValues(host, o.metricLabel()).Inc() })
			return err
		}
		c.series.record(func(m *metrics, host string) { m.retries.WithLabelValues(host, o.metricLabel()).Inc() })
		c.log.DebugContext(ctx, "retrying upstream request", "upstream", c.host, "op", o.op, "repo", o.repo,
			"retry", n+1, "delay", delay, "err", err)
		if c.sleep(ctx, delay) != nil {
			// The deadline or the caller ended the wait: the attempt's
			// error says more about the upstream than the context's.
			c.series.record(func(m *metrics, host string) { m.errors.WithLabelValues(host, o.metricLabel()).Inc() })
			return err
		}
	}
}

// fitsDeadline reports whether a retry after delay could still run before
// ctx ends; waiting for one that cannot would only delay the failure.
func fitsDeadline(ctx context.Context, delay time.Duration) bool {
	if ctx.Err() != nil {
		return false
	}
	deadline, ok := ctx.Deadline()
	return !ok || time.Until(deadline) > delay
}

// withTimeout bounds a metadata operation, handshake and retries included.
func (c *Client) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.timeout)
}

// backoff is the wait before retry n+1.
func backoff(n int) time.Duration {
	return min(firstBackoff<<n, maxBackoff)
}

func sleepContext(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// send makes one request to the registry with repo's authenticated
// transport and returns the response if its status is one of want; any
// other answer or failure becomes an *Error.
func (c *Client) send(ctx context.Context, o opError, method, target string, header http.Header, want ...int) (*http.Response, error) {
	rt, err := c.transportFor(ctx, o.repo)
	if err != nil {
		return nil, o.fromErr(err)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, nil)
	if err != nil {
		return nil, o.fromErr(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	client := &http.Client{Transport: rt, CheckRedirect: c.checkRedirect}
	resp, err := client.Do(req)
	if err != nil {
		return nil, o.fromErr(err)
	}
	for _, status := range want {
		if resp.StatusCode == status {
			return resp, nil
		}
	}
	defer resp.Body.Close()
	var terr *transport.Error
	if err := transport.CheckError(resp); !errors.As(err, &terr) {
		terr = nil // the error body could not be read; the status says enough
	}
	return nil, o.fromStatus(resp.StatusCode, terr)
}

// checkRedirect follows redirects (Docker Hub sends blob GETs to a CDN)
// but never carries the registry's token to another host. net/http would
// forward it to the same hostname on another port, and ggcr only
// refrains from adding it, so it is removed here.
func (c *Client) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	if req.URL.Host != c.base.Host || req.URL.Scheme != c.base.Scheme {
		req.Header.Del("Authorization")
	}
	return nil
}

// endpoint is the URL of an API path below /v2/<repo>.
func (c *Client) endpoint(repo, suffix string) string {
	return c.base.String() + "/v2/" + repo + suffix
}
