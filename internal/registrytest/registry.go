package registrytest

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"

	"github.com/regmirror/regmirror/internal/repoglob"
)

// DefaultTokenTTL is how long a token stays valid when Options.TokenTTL is zero.
const DefaultTokenTTL = 300 * time.Second

// Service is the service name the registry puts in its challenges and
// expects at its token endpoint.
const Service = "registrytest"

// Options configures a Registry. The zero value is an open, public registry.
type Options struct {
	// Username and Password are the only credentials the token endpoint
	// accepts. With no Username, any credentials are rejected.
	Username, Password string
	// Private lists repository globs (internal/repoglob) that need
	// credentials, e.g. "private/*". Anonymous tokens get no scope on them,
	// so anonymous pulls fail with 401, as on Docker Hub.
	Private []string
	// IsPrivate, when set, also marks a repository private.
	IsPrivate func(repo string) bool
	// TokenTTL is the lifetime of issued tokens; zero means DefaultTokenTTL.
	TokenTTL time.Duration
	// Now is the clock for token expiry; nil means time.Now. Tests advance
	// it to expire tokens without sleeping.
	Now func() time.Time
	// RedirectBlobs answers blob GETs with a 307 to the CDN listener, as
	// Docker Hub does. It can be changed later with SetRedirectBlobs.
	RedirectBlobs bool
	// Addr is the registry listener's address; empty means a random
	// loopback port ("127.0.0.1:0"). The CDN listens on the same host.
	Addr string
	// TagsPageSize, when positive, caps every tag list page at that many
	// tags and links the next page with a Link header.
	TagsPageSize int
	// TLS, when set, makes both listeners serve HTTPS with it (its
	// ClientAuth may demand client certificates); URLs then say https.
	TLS *tls.Config
	// Referrers serves the referrers API (OCI 1.1). Without it the
	// registry answers 404 there, as registries before OCI 1.1 do, and
	// clients fall back to the tag schema (an index tagged sha256-<hex>).
	Referrers bool
	// Hostname, when set, names the listeners in the registry's URLs
	// (its own, the CDN's, the token realm) in place of their address,
	// for tests whose proxy or resolver alone knows where it is.
	Hostname string
}

// Registry is a running upstream registry with a token service and a CDN
// listener. All methods are safe for concurrent use.
type Registry struct {
	opts     Options
	registry http.Handler
	blobs    *blobStore
	tokens   *tokenStore
	stats    *stats
	faults   *faultTable
	throttle *throttle
	active   *activeSet

	regServer, cdnServer *http.Server
	url, cdnURL          string

	down        atomic.Bool
	redirect    atomic.Bool
	ignoreRange atomic.Bool
	random      randomFaults

	failMu sync.Mutex
	// failures holds the pending injected error answers per request kind.
	failures map[Kind][]int
}

// Start runs a registry on two 127.0.0.1 listeners (registry and CDN).
// Call Close when done.
func Start(opts Options) (*Registry, error) {
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = DefaultTokenTTL
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	for _, p := range opts.Private {
		if err := repoglob.Check(p); err != nil {
			return nil, fmt.Errorf("registrytest: private: %w", err)
		}
	}
	r := &Registry{
		opts:     opts,
		blobs:    newBlobStore(),
		tokens:   newTokenStore(),
		stats:    newStats(),
		faults:   newFaultTable(),
		throttle: &throttle{},
		active:   newActiveSet(),
		failures: map[Kind][]int{},
	}
	r.redirect.Store(opts.RedirectBlobs)
	r.blobs.redirect = r.blobRedirect
	r.registry = ggcrregistry.New(
		ggcrregistry.Logger(log.New(io.Discard, "", 0)),
		ggcrregistry.WithBlobHandler(r.blobs),
		ggcrregistry.WithReferrersSupport(opts.Referrers),
	)

	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	host, _, err := net.SplitHostPort(opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("registrytest: address: %w", err)
	}
	regLn, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("registrytest: listen: %w", err)
	}
	cdnLn, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		regLn.Close()
		return nil, fmt.Errorf("registrytest: listen for CDN: %w", err)
	}
	scheme := "http"
	if opts.TLS != nil {
		scheme = "https"
	}
	r.url = scheme + "://" + opts.named(regLn.Addr())
	r.cdnURL = scheme + "://" + opts.named(cdnLn.Addr())
	r.regServer = newServer(http.HandlerFunc(r.serveRegistry), opts.TLS)
	r.cdnServer = newServer(http.HandlerFunc(r.serveCDN), opts.TLS)
	go serve(r.regServer, regLn)
	go serve(r.cdnServer, cdnLn)
	return r, nil
}

// named is addr as the registry's URLs write it.
func (o Options) named(addr net.Addr) string {
	if o.Hostname == "" {
		return addr.String()
	}
	_, port, _ := net.SplitHostPort(addr.String())
	return net.JoinHostPort(o.Hostname, port)
}

// serve runs srv on ln, over TLS when srv has a TLS config.
func serve(srv *http.Server, ln net.Listener) {
	if srv.TLSConfig != nil {
		srv.ServeTLS(ln, "", "")
		return
	}
	srv.Serve(ln)
}

// New starts a registry for a test or benchmark and closes it in tb.Cleanup.
func New(tb testing.TB, opts Options) *Registry {
	tb.Helper()
	r, err := Start(opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(r.Close)
	return r
}

func newServer(h http.Handler, tlsConfig *tls.Config) *http.Server {
	if tlsConfig != nil {
		tlsConfig = tlsConfig.Clone() // ServeTLS adds its protocols to it
	}
	return &http.Server{
		Handler:           h,
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
}

// Close stops both listeners, drops open connections, releases stalled
// responses and waits for every handler to return. The request counts stay
// readable. Close is idempotent.
func (r *Registry) Close() {
	r.active.close()
	r.regServer.Close()
	r.cdnServer.Close()
	r.active.wait()
}

// URL is the registry's base URL, e.g. "http://127.0.0.1:41234".
func (r *Registry) URL() string { return r.url }

// Host is the registry's host:port, as used in image references.
func (r *Registry) Host() string {
	_, host, _ := strings.Cut(r.url, "://")
	return host
}

// CDNURL is the base URL of the listener that redirected blob GETs go to.
func (r *Registry) CDNURL() string { return r.cdnURL }

// Realm is the token endpoint the registry's challenges name.
func (r *Registry) Realm() string { return r.url + "/token" }

// SetDown makes both listeners answer every request with 503 while down is true.
func (r *Registry) SetDown(down bool) { r.down.Store(down) }

// SetRedirectBlobs turns Docker-Hub-style blob redirects to the CDN on or off.
func (r *Registry) SetRedirectBlobs(on bool) { r.redirect.Store(on) }

// SetThrottle limits the bandwidth shared by all blob bodies, on both
// listeners, to bytesPerSecond; zero or less removes the limit.
func (r *Registry) SetThrottle(bytesPerSecond int64) { r.throttle.setRate(bytesPerSecond) }

// FailNext makes the next n requests of kind answer status (e.g. 503 or 429)
// with an OCI error body, before any auth check, then behave normally again.
func (r *Registry) FailNext(kind Kind, n int, status int) {
	r.failMu.Lock()
	defer r.failMu.Unlock()
	for range n {
		r.failures[kind] = append(r.failures[kind], status)
	}
}

// takeFailure returns the injected status for the next request of kind, or 0.
func (r *Registry) takeFailure(kind Kind) int {
	r.failMu.Lock()
	defer r.failMu.Unlock()
	pending := r.failures[kind]
	if len(pending) == 0 {
		return 0
	}
	r.failures[kind] = pending[1:]
	return pending[0]
}

// RevokeTokens invalidates every token issued so far.
func (r *Registry) RevokeTokens() { r.tokens.revokeAll() }

// isPrivate reports whether repo needs credentials.
func (r *Registry) isPrivate(repo string) bool {
	if r.opts.IsPrivate != nil && r.opts.IsPrivate(repo) {
		return true
	}
	for _, p := range r.opts.Private {
		if repoglob.Match(p, repo) {
			return true
		}
	}
	return false
}

// serveRegistry is the registry listener's handler: accounting, injected
// failures, the token endpoint, auth, then go-containerregistry's registry.
func (r *Registry) serveRegistry(w http.ResponseWriter, req *http.Request) {
	if !r.active.enter() {
		writeError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "registry is closing")
		return
	}
	defer r.active.exit()

	info := classify(req.URL.Path)
	rec := &statusRecorder{ResponseWriter: w}
	entry := r.stats.begin(info, req)
	defer func() { r.stats.finish(entry, rec.statusCode()) }()

	if status := r.injectedStatus(info.Kind); status != 0 {
		writeStatusError(rec, status)
		return
	}
	switch info.Kind {
	case KindToken:
		r.serveToken(rec, req)
		return
	case KindUnknown:
		writeError(rec, http.StatusNotFound, "NOT_FOUND", "not a registry API path")
		return
	}
	if !r.authorize(rec, req, info) {
		return
	}
	if info.Kind == KindTags && r.opts.TagsPageSize > 0 {
		r.serveTagsPage(rec, req, info.Repo)
		return
	}
	var cut float64
	if info.Kind == KindBlob && req.Method == http.MethodGet {
		var fail bool
		if fail, cut = r.random.draw(); fail {
			writeStatusError(rec, http.StatusInternalServerError)
			return
		}
		r.blobRange(req, info)
	}
	out := r.bodyWriter(rec, req, info)
	if fw, ok := out.(*faultWriter); ok {
		fw.cut = cut
	}
	r.registry.ServeHTTP(out, req)
}

// injectedStatus is the error status this request must get, or 0.
func (r *Registry) injectedStatus(kind Kind) int {
	if r.down.Load() {
		return http.StatusServiceUnavailable
	}
	return r.takeFailure(kind)
}

// bodyWriter wraps w so manifest and blob bodies get faults and throttling.
func (r *Registry) bodyWriter(w http.ResponseWriter, req *http.Request, info RequestInfo) http.ResponseWriter {
	if req.Method != http.MethodGet {
		return w
	}
	switch info.Kind {
	case KindManifest:
		return r.newFaultWriter(w, req, "", nil)
	case KindBlob:
		return r.newFaultWriter(w, req, info.Reference, r.throttle)
	}
	return w
}

// statusRecorder remembers the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection's Flush.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusRecorder) statusCode() int {
	if s.status == 0 {
		return http.StatusOK
	}
	return s.status
}

// activeSet tracks running handlers so Close can wait for them, and tells
// stalled or throttled handlers to give up.
type activeSet struct {
	closing chan struct{}

	mu sync.Mutex
	// running is the number of handlers in flight; idle is signalled when
	// it drops to zero.
	running int
	closed  bool
	idle    *sync.Cond
}

func newActiveSet() *activeSet {
	a := &activeSet{closing: make(chan struct{})}
	a.idle = sync.NewCond(&a.mu)
	return a
}

func (a *activeSet) enter() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return false
	}
	a.running++
	return true
}

func (a *activeSet) exit() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.running--
	if a.running == 0 {
		a.idle.Broadcast()
	}
}

func (a *activeSet) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.closed {
		a.closed = true
		close(a.closing)
	}
}

func (a *activeSet) wait() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for a.running > 0 {
		a.idle.Wait()
	}
}

// errClosing is returned to handlers whose wait was cut short by Close.
var errClosing = errors.New("registrytest: registry closing")
