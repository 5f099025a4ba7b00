package edge

import (
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
)

// Proxies are the reverse proxies whose X-Forwarded-For and
// X-Forwarded-Proto headers are believed. The zero value trusts nobody.
type Proxies struct {
	nets []netip.Prefix
}

// ParseProxies reads a list of networks (CIDRs, e.g. "10.0.0.0/8") and
// addresses (a single proxy, e.g. "192.0.2.10").
func ParseProxies(list []string) (Proxies, error) {
	var p Proxies
	for _, s := range list {
		s = strings.TrimSpace(s)
		if prefix, err := netip.ParsePrefix(s); err == nil {
			p.nets = append(p.nets, prefix.Masked())
			continue
		}
		addr, err := netip.ParseAddr(s)
		if err != nil || addr.Zone() != "" {
			return Proxies{}, fmt.Errorf("%q is neither a network in CIDR notation nor an IP address", s)
		}
		p.nets = append(p.nets, netip.PrefixFrom(addr.Unmap(), addr.Unmap().BitLen()))
	}
	return p, nil
}

// Contains reports whether addr is one of the proxies.
func (p Proxies) Contains(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, n := range p.nets {
		if n.Contains(addr) {
			return true
		}
	}
	return false
}

// forwardingHeaders are the headers by which a proxy says whom and how it
// forwards for, and which request of its own it forwards. From anyone but
// a trusted proxy they are lies or noise.
var forwardingHeaders = []string{
	"Forwarded", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host",
	"X-Forwarded-Port", "X-Forwarded-Prefix", "X-Real-Ip", RequestIDHeader,
}

// apply makes r say who its client is, on a copy when anything changes
// (a handler must not modify the server's request). From a trusted proxy,
// RemoteAddr becomes the client's address from X-Forwarded-For (the
// rightmost hop that is not itself a trusted proxy), with port 0 since the
// port is not forwarded, and X-Forwarded-Proto keeps only the scheme the
// nearest proxy saw. From any other peer, every forwarding header is
// deleted, so nothing behind this can be fooled by one.
func (p Proxies) apply(r *http.Request) *http.Request {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil || !p.Contains(peer.Addr()) {
		return withoutForwarding(r)
	}
	client := p.clientOf(peer.Addr().Unmap(), r.Header.Values("X-Forwarded-For"))
	proto := strings.ToLower(lastValue(r.Header.Values("X-Forwarded-Proto")))
	r = r.Clone(r.Context())
	if client != peer.Addr().Unmap() {
		r.RemoteAddr = netip.AddrPortFrom(client, 0).String()
	}
	if proto != "" {
		r.Header.Set("X-Forwarded-Proto", proto)
	}
	return r
}

func withoutForwarding(r *http.Request) *http.Request {
	if !slices.ContainsFunc(forwardingHeaders, func(h string) bool { return len(r.Header.Values(h)) > 0 }) {
		return r
	}
	r = r.Clone(r.Context())
	for _, h := range forwardingHeaders {
		r.Header.Del(h)
	}
	return r
}

// clientOf walks X-Forwarded-For from the right: as long as the hop that
// handed the request on is a trusted proxy, the address it names is the
// next hop. The first address that is not a trusted proxy is the client;
// what lies left of it is whatever the client claimed and is ignored. An
// address that does not parse ends the walk at the proxy that wrote it.
func (p Proxies) clientOf(peer netip.Addr, xff []string) netip.Addr {
	hops := strings.Split(strings.Join(xff, ","), ",")
	client := peer
	for i := len(hops) - 1; i >= 0 && p.Contains(client); i-- {
		addr, ok := parseHop(hops[i])
		if !ok {
			break
		}
		client = addr
	}
	return client
}

// parseHop reads one X-Forwarded-For entry: an address, with or without
// a port.
func parseHop(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if addr, err := netip.ParseAddr(s); err == nil {
		return addr.WithZone("").Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().WithZone("").Unmap(), true
	}
	return netip.Addr{}, false
}

// lastValue is the rightmost element of a header's comma-separated values.
func lastValue(values []string) string {
	if len(values) == 0 {
		return ""
	}
	last := values[len(values)-1]
	if i := strings.LastIndexByte(last, ','); i >= 0 {
		last = last[i+1:]
	}
	return strings.TrimSpace(last)
}

// clientAddr is the address of r's client without the port: after
// Handler, the real client's, also behind a trusted proxy, which forwards
// no port. It is what the access log names.
func clientAddr(r *http.Request) string {
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		return ap.Addr().Unmap().String()
	}
	return r.RemoteAddr
}
