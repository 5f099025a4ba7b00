package cluster

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Peer is one replica, known by its base URL (scheme://host:port). The URL
// is also the peer's identity for ownership, so every replica must name a
// peer the same way: ParsePeer normalizes case and IP literals.
type Peer struct {
	URL string
}

// String returns the peer's base URL.
func (p Peer) String() string { return p.URL }

// ParsePeer parses a base URL such as http://10.0.0.1:5000. It refuses
// anything but http and https, and URLs with a path, query, fragment or
// user information, which a base URL has no use for.
func ParsePeer(raw string) (Peer, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Peer{}, fmt.Errorf("peer URL %q: %w", raw, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return Peer{}, fmt.Errorf("peer URL %q: scheme must be http or https", raw)
	case u.Hostname() == "":
		return Peer{}, fmt.Errorf("peer URL %q: no host", raw)
	case u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Path != "" && u.Path != "/":
		return Peer{}, fmt.Errorf("peer URL %q: want a base URL such as http://10.0.0.1:5000", raw)
	}
	return peerAt(u.Scheme, u.Hostname(), u.Port()), nil
}

// peerAt builds the normal form of a peer's URL: lower-case host, IP
// literals in their canonical form, IPv6 in brackets.
func peerAt(scheme, host, port string) Peer {
	host = strings.ToLower(host)
	if ip := net.ParseIP(host); ip != nil {
		host = ip.String()
	}
	switch {
	case port != "":
		host = net.JoinHostPort(host, port)
	case strings.Contains(host, ":"):
		host = "[" + host + "]"
	}
	return Peer{URL: scheme + "://" + host}
}
