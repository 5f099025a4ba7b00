package upstream

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/regmirror/regmirror/internal/registryhost"
)

// hopRouter is the bottom of the client's default transport. Every hop of
// every request passes it: the registry's, the token service's, each blob
// redirect's. Requests for the hosts the operator configured (the
// registry's, its token services, Config.RedirectHosts) go through
// configured, which connects wherever those names resolve; requests for any
// other host go through elsewhere, which connects only to public addresses.
// An upstream that is hostile, or a man in the middle of plain http,
// cannot redirect the mirror to instance-data.ec2.internal or 10.0.0.1.
type hopRouter struct {
	// trusted are the configured hosts' canonical names, without ports:
	// another port of the registry's machine reaches nothing the registry
	// itself does not.
	trusted               map[string]bool
	configured, elsewhere http.RoundTripper
}

func (h *hopRouter) RoundTrip(req *http.Request) (*http.Response, error) {
	if h.trusted[registryhost.Hostname(req.URL.Host)] {
		return h.configured.RoundTrip(req)
	}
	return h.elsewhere.RoundTrip(req)
}

// CloseIdleConnections closes both transports' idle connections.
func (h *hopRouter) CloseIdleConnections() {
	for _, rt := range []http.RoundTripper{h.configured, h.elsewhere} {
		if c, ok := rt.(interface{ CloseIdleConnections() }); ok {
			c.CloseIdleConnections()
		}
	}
}

// defaultTransports is the transport under the credential guard when
// Options.Transport is nil: for a registry a client named, public
// addresses only for every host; else the hop router. The configured
// hosts get the TLS settings in full (client certificate, skipped
// verification); the other hosts only the added CAs. With Config.Proxy
// both sides go through that proxy, the other hosts still checked for
// public addresses first; without it, through HTTPS_PROXY as NO_PROXY
// decides. clientCertChanged hears how each reload of the client
// certificate that a change of its files started ended.
func defaultTransports(cfg Config, base *url.URL, clientCertChanged func(error)) (http.RoundTripper, error) {
	if cfg.PublicOnly {
		return publicTransport(cfg, nil), nil
	}
	configuredTLS, elsewhereTLS, err := cfg.TLS.tlsConfigs(clientCertChanged)
	if err != nil {
		return nil, err
	}
	proxy, err := cfg.proxyURL()
	if err != nil {
		return nil, err
	}
	trusted := map[string]bool{}
	for _, h := range trustedHosts(cfg, base) {
		trusted[registryhost.Hostname(h)] = true
	}
	configured := defaultTransport(cfg)
	configured.TLSClientConfig = configuredTLS
	checked := newCheckedProxy()
	if proxy != nil {
		configured.Proxy = http.ProxyURL(proxy)
		checked.fromEnvironment = http.ProxyURL(proxy)
	}
	elsewhere := publicTransport(cfg, checked)
	elsewhere.TLSClientConfig = elsewhereTLS
	return &hopRouter{trusted: trusted, configured: configured, elsewhere: elsewhere}, nil
}

// trustedHosts are the hosts the operator configured for a registry.
func trustedHosts(cfg Config, base *url.URL) []string {
	hosts := []string{base.Host, cfg.Host}
	hosts = append(hosts, authHostsOf(base.Host)...)
	hosts = append(hosts, authHostsOf(cfg.Host)...)
	hosts = append(hosts, cfg.AuthHosts...)
	return append(hosts, cfg.RedirectHosts...)
}

func defaultTransport(cfg Config) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = cfg.DialTimeout
	t.ResponseHeaderTimeout = cfg.ResponseHeaderTimeout
	// A cold image pull fetches many blobs of one registry at once.
	t.MaxIdleConnsPerHost = 32
	return t
}

// publicTransport is the transport for hosts nobody configured. Its dialer
// refuses every address PublicAddress refuses, after DNS resolution. With
// proxy nil it dials directly and ignores HTTPS_PROXY, whose address is
// usually private; otherwise it uses the environment's proxy as proxy
// decides.
func publicTransport(cfg Config, proxy *checkedProxy) *http.Transport {
	t := defaultTransport(cfg)
	public := &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second, Control: refuseNonPublic}
	t.Proxy = nil
	t.DialContext = public.DialContext
	if proxy == nil {
		return t
	}
	direct := &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}
	t.Proxy = proxy.forRequest
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if proxy.isProxy(addr) {
			return direct.DialContext(ctx, network, addr)
		}
		return public.DialContext(ctx, network, addr)
	}
	return t
}

// checkedProxy chooses the environment's proxy (HTTPS_PROXY, NO_PROXY),
// or Config.Proxy, for the hosts nobody configured, so that blob
// downloads from a CDN keep working where only a proxy reaches the
// internet. The proxy resolves and
// dials the target itself, out of the dialer's sight, so the target's name
// is resolved here first and refused unless all its addresses are public;
// the dialer then lets through the proxy's own address, which the operator
// chose. A name that changes its answer between this lookup and the
// proxy's can still slip through: have the proxy refuse private
// destinations too.
type checkedProxy struct {
	// fromEnvironment and lookup are http.ProxyFromEnvironment and the
	// resolver; tests replace them.
	fromEnvironment func(*http.Request) (*url.URL, error)
	lookup          func(ctx context.Context, network, host string) ([]netip.Addr, error)

	mu sync.Mutex
	// addrs are the host:port the chosen proxies are dialed at.
	addrs map[string]bool
}

func newCheckedProxy() *checkedProxy {
	return &checkedProxy{
		fromEnvironment: http.ProxyFromEnvironment,
		lookup:          net.DefaultResolver.LookupNetIP,
		addrs:           map[string]bool{},
	}
}

func (p *checkedProxy) forRequest(req *http.Request) (*url.URL, error) {
	proxy, err := p.fromEnvironment(req)
	if err != nil || proxy == nil {
		return proxy, err
	}
	if err := p.checkTarget(req.Context(), req.URL.Hostname()); err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.addrs[proxyAddress(proxy)] = true
	p.mu.Unlock()
	return proxy, nil
}

func (p *checkedProxy) isProxy(addr string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addrs[addr]
}

// checkTarget refuses a host with any address that is not public.
func (p *checkedProxy) checkTarget(ctx context.Context, host string) error {
	ips := []netip.Addr{}
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = append(ips, ip)
	} else if ips, err = p.lookup(ctx, "ip", host); err != nil {
		return fmt.Errorf("resolving %s: %w", host, err)
	}
	for _, ip := range ips {
		if !PublicAddress(ip) {
			return fmt.Errorf("%s resolves to %s: %w", host, ip.Unmap(), ErrNotPublic)
		}
	}
	return nil
}

// proxyAddress is the host:port net/http dials for a proxy URL.
func proxyAddress(proxy *url.URL) string {
	port := proxy.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443", "socks5": "1080", "socks5h": "1080"}[strings.ToLower(proxy.Scheme)]
	}
	return net.JoinHostPort(proxy.Hostname(), port)
}
