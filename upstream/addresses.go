package upstream

import (
	"errors"
	"fmt"
	"net/netip"
	"syscall"
)

// ErrNotPublic means the client refused to connect to an address that is
// not public: a host the operator did not configure (a blob redirect's
// CDN, a token realm elsewhere, a registry a client named) resolved to a
// private, loopback, link-local, reserved or translated address. Retrying
// does not help; Config.RedirectHosts may.
var ErrNotPublic = errors.New("not a public address")

// The address policy is an allowlist: an address is public only inside
// the blocks IANA allocates as global unicast, and outside every
// special-purpose block there (RFC 6890 and its successors). A denylist of
// the private ranges misses the blocks that translate to them or that no
// one routes, so new special blocks are refused until listed here.
var (
	// unicastIPv4 is 0.0.0.0-223.255.255.255: class D (multicast) and E
	// (240.0.0.0/4, reserved, and the broadcast address) are not unicast.
	unicastIPv4 = []netip.Prefix{
		netip.MustParsePrefix("0.0.0.0/1"),
		netip.MustParsePrefix("128.0.0.0/2"),
		netip.MustParsePrefix("192.0.0.0/3"),
	}
	// globalUnicastIPv6 is the only IPv6 block allocated as global
	// unicast. It leaves out ::/8 (IPv4-compatible and the unspecified
	// and loopback addresses), 64:ff9b::/96 and 64:ff9b:1::/48 (NAT64,
	// which reach IPv4 addresses such as 169.254.169.254), 100::/64
	// (discard), fc00::/7 (unique local), fe80::/10 (link-local) and
	// ff00::/8 (multicast).
	globalUnicastIPv6 = netip.MustParsePrefix("2000::/3")
	// specialPurpose are the blocks inside the two above that are not
	// globally reachable, or that tunnel to addresses that may not be.
	specialPurpose = []netip.Prefix{
		netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
		netip.MustParsePrefix("10.0.0.0/8"),      // private
		netip.MustParsePrefix("100.64.0.0/10"),   // shared address space (carrier-grade NAT)
		netip.MustParsePrefix("127.0.0.0/8"),     // loopback
		netip.MustParsePrefix("169.254.0.0/16"),  // link-local, cloud metadata
		netip.MustParsePrefix("172.16.0.0/12"),   // private
		netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
		netip.MustParsePrefix("192.0.2.0/24"),    // documentation
		netip.MustParsePrefix("192.88.99.0/24"),  // 6to4 relay anycast
		netip.MustParsePrefix("192.168.0.0/16"),  // private
		netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
		netip.MustParsePrefix("198.51.100.0/24"), // documentation
		netip.MustParsePrefix("203.0.113.0/24"),  // documentation
		netip.MustParsePrefix("2001::/23"),       // IETF protocol assignments, Teredo (2001::/32) among them
		netip.MustParsePrefix("2001:db8::/32"),   // documentation
		netip.MustParsePrefix("2002::/16"),       // 6to4, which embeds any IPv4 address
		netip.MustParsePrefix("3fff::/20"),       // documentation
	}
)

// PublicAddress reports whether ip is a global unicast address outside
// every special-purpose block: the only kind of address a host the
// operator did not configure may be reached at. An IPv4-mapped IPv6
// address is judged as the IPv4 address it maps; an address with a zone
// is link-local and never public.
func PublicAddress(ip netip.Addr) bool {
	ip = ip.Unmap()
	if ip.Zone() != "" {
		return false
	}
	switch {
	case ip.Is4() && !containsAny(unicastIPv4, ip):
		return false
	case ip.Is6() && !globalUnicastIPv6.Contains(ip):
		return false
	case !ip.IsValid():
		return false
	}
	return !containsAny(specialPurpose, ip)
}

func containsAny(prefixes []netip.Prefix, ip netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// refuseNonPublic is a net.Dialer Control function: it runs after DNS,
// on the very address about to be dialed, so neither a name resolving to
// a private address nor one that changes its answer between two lookups
// gets past it.
func refuseNonPublic(_, address string, _ syscall.RawConn) error {
	addrPort, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("dialing %s: %w", address, err)
	}
	if ip := addrPort.Addr().Unmap(); !PublicAddress(ip) {
		return fmt.Errorf("dialing %s: %w", ip, ErrNotPublic)
	}
	return nil
}
