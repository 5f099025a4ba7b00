package edge

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
)

// ConnLimits caps the connections a Listener keeps open.
type ConnLimits struct {
	// Total caps all open connections; zero or negative means no cap.
	Total int
	// PerClient caps the open connections of one client: an IPv4 address,
	// or an IPv6 /64, which is what one host is usually given. Zero or
	// negative means no cap.
	PerClient int
	// Exempt, when set, names peers that only Total applies to: a reverse
	// proxy carries the connections of many clients.
	Exempt func(netip.Addr) bool
}

// Reasons a connection is refused, the values of the metric's reason label.
const (
	refusedClient = "client"
	refusedTotal  = "total"
)

// Listener is a net.Listener that closes, as soon as it accepts them, the
// connections over its limits, so that one client cannot take every
// connection, file and goroutine the daemon has. A connection counts from
// its accept until its Close. Each refusal is counted in the metrics; the
// first refusal of a client (or of the total) since it was last under its
// cap is logged, so a flood makes one log line, not one per connection.
// It is safe for concurrent use.
type Listener struct {
	net.Listener
	limits  ConnLimits
	log     *slog.Logger
	metrics *Metrics

	// mu guards the counts and the logging state below it.
	mu       sync.Mutex
	open     int
	byClient map[netip.Prefix]int
	// refusing holds the clients refused since they were last under their
	// cap; refusingAll is the same for the total.
	refusing    map[netip.Prefix]bool
	refusingAll bool
}

// LimitListener wraps ln. A nil log discards; nil metrics count nothing.
func LimitListener(ln net.Listener, limits ConnLimits, log *slog.Logger, metrics *Metrics) *Listener {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Listener{
		Listener: ln,
		limits:   limits,
		log:      log,
		metrics:  metrics,
		byClient: map[netip.Prefix]int{},
		refusing: map[netip.Prefix]bool{},
	}
}

// Accept returns the next connection within the limits, closing those
// over them on the way.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		peer := peerAddr(c.RemoteAddr())
		client := clientOf(peer)
		exempt := l.limits.Exempt != nil && peer.IsValid() && l.limits.Exempt(peer)
		if reason := l.admit(client, exempt); reason != "" {
			l.refuse(c, client, reason)
			continue
		}
		return &limitedConn{Conn: c, release: sync.OnceFunc(func() { l.release(client) })}, nil
	}
}

// admit counts a new connection of client, or returns why it may not open.
func (l *Listener) admit(client netip.Prefix, exempt bool) (refused string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.limits.Total > 0 && l.open >= l.limits.Total:
		return refusedTotal
	case !exempt && l.limits.PerClient > 0 && l.byClient[client] >= l.limits.PerClient:
		return refusedClient
	}
	l.open++
	l.byClient[client]++
	l.metrics.setOpen(l.open)
	return ""
}

// refuse counts, maybe logs, and closes a connection over a limit. The
// count comes before the close, so whoever sees the close sees the count.
func (l *Listener) refuse(c net.Conn, client netip.Prefix, reason string) {
	l.metrics.refusedConn(reason)
	if l.firstRefusal(client, reason) {
		if reason == refusedTotal {
			l.log.Warn("too many connections open: refusing new ones until some close",
				"limit", l.limits.Total, "client", describe(client))
		} else {
			l.log.Warn("client has too many connections open: refusing more of its connections until some close",
				"client", describe(client), "limit", l.limits.PerClient)
		}
	}
	c.Close()
}

// firstRefusal reports whether this is the first refusal for reason since
// the count was last under its cap, and remembers that it happened.
func (l *Listener) firstRefusal(client netip.Prefix, reason string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if reason == refusedTotal {
		first := !l.refusingAll
		l.refusingAll = true
		return first
	}
	first := !l.refusing[client]
	l.refusing[client] = true
	return first
}

func (l *Listener) release(client netip.Prefix) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.byClient[client]--; l.byClient[client] <= 0 {
		delete(l.byClient, client)
	}
	// Refused again, a client is logged again: the map holds only clients
	// at their cap, so it stays as small as the connections open.
	delete(l.refusing, client)
	l.refusingAll = false
	l.metrics.setOpen(l.open)
}

// limitedConn gives its slot back when it is closed, once.
type limitedConn struct {
	net.Conn
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.release()
	return err
}

// ReadFrom keeps the TCP connection's sendfile and splice for what
// net/http copies to it.
func (c *limitedConn) ReadFrom(r io.Reader) (int64, error) { return io.Copy(c.Conn, r) }

// CloseWrite lets net/http half-close the connection after an answer to a
// request whose body it did not read, so that the answer is not lost to a
// reset.
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// peerAddr is the IP address of a TCP peer; invalid for other networks.
func peerAddr(a net.Addr) netip.Addr {
	if tcp, ok := a.(*net.TCPAddr); ok {
		return tcp.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// clientOf is what one client is for the per-client cap: its IPv4
// address, or its IPv6 /64, since a single host commonly holds a whole /64.
// Peers without an IP address (a Unix socket) are one client together.
func clientOf(addr netip.Addr) netip.Prefix {
	if !addr.IsValid() {
		return netip.Prefix{}
	}
	bits := addr.BitLen()
	if addr.Is6() {
		bits = 64
	}
	p, _ := addr.WithZone("").Prefix(bits)
	return p
}

// describe prints a client for the log: an address, or an IPv6 network.
func describe(client netip.Prefix) string {
	switch {
	case !client.IsValid():
		return "non-IP peer"
	case client.IsSingleIP():
		return client.Addr().String()
	}
	return client.String()
}
