package edge

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// ioTimeout bounds each network wait of these tests; it is a safety net
// for a broken build, never what a test measures.
const ioTimeout = 10 * time.Second

// limitedServer is a Listener on loopback whose accepted connections
// arrive on a channel.
type limitedServer struct {
	ln       *Listener
	accepted chan net.Conn
	logs     *syncBuffer
	metrics  *Metrics
}

func startLimited(t *testing.T, limits ConnLimits) *limitedServer {
	t.Helper()
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	metrics, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	s := &limitedServer{
		ln:       LimitListener(tcp, limits, slog.New(slog.NewTextHandler(logs, nil)), metrics),
		accepted: make(chan net.Conn, 16),
		logs:     logs,
		metrics:  metrics,
	}
	go func() {
		for {
			c, err := s.ln.Accept()
			if err != nil {
				close(s.accepted)
				return
			}
			s.accepted <- c
		}
	}()
	t.Cleanup(func() { s.ln.Close() })
	return s
}

// dialFrom connects from a loopback address of its own (all of 127/8 is
// local on Linux), so one test can be several clients.
func (s *limitedServer) dialFrom(t *testing.T, ip string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: ioTimeout}
	c, err := d.Dial("tcp", s.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// expectAccepted waits for the server's side of the next connection.
func (s *limitedServer) expectAccepted(t *testing.T) net.Conn {
	t.Helper()
	select {
	case c := <-s.accepted:
		return c
	case <-time.After(ioTimeout):
		t.Fatal("no connection accepted")
		return nil
	}
}

// expectClosedByServer checks that the server closed c without a byte.
func expectClosedByServer(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(ioTimeout))
	n, err := c.Read(make([]byte, 1))
	var ne net.Error
	if n > 0 || err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection over the cap: read %d bytes, %v; want it closed by the server", n, err)
	}
}

func TestListenerCapsConnectionsPerClient(t *testing.T) {
	t.Parallel()
	s := startLimited(t, ConnLimits{PerClient: 1})

	s.dialFrom(t, "127.0.0.1")
	first := s.expectAccepted(t)
	expectClosedByServer(t, s.dialFrom(t, "127.0.0.1"))
	expectClosedByServer(t, s.dialFrom(t, "127.0.0.1"))
	s.dialFrom(t, "127.0.0.2")
	s.expectAccepted(t) // another client has a slot of its own

	first.Close()
	s.dialFrom(t, "127.0.0.1")
	s.expectAccepted(t) // the closed connection gave its slot back
	expectClosedByServer(t, s.dialFrom(t, "127.0.0.1"))

	if got := valueOf(t, s.metrics.refusedConns.WithLabelValues(refusedClient)); got != 3 {
		t.Errorf("refused connections (client) = %v, want 3", got)
	}
	if got := valueOf(t, s.metrics.open); got != 2 {
		t.Errorf("open connections = %v, want 2", got)
	}
	// One line per episode at the cap, not one per refused connection.
	if n := strings.Count(s.logs.String(), "client has too many connections open"); n != 2 {
		t.Errorf("%d log lines about the client's cap, want 2:\n%s", n, s.logs.String())
	}
	if !strings.Contains(s.logs.String(), "client=127.0.0.1 ") {
		t.Errorf("the log does not name the client:\n%s", s.logs.String())
	}
}

// The total cap holds for every peer, trusted proxies included; the
// per-client cap does not apply to exempt peers.
func TestListenerCapsTotalAndExemptsProxies(t *testing.T) {
	t.Parallel()
	proxy := netip.MustParseAddr("127.0.0.9")
	s := startLimited(t, ConnLimits{Total: 3, PerClient: 1, Exempt: func(a netip.Addr) bool { return a == proxy }})

	s.dialFrom(t, "127.0.0.9")
	s.expectAccepted(t)
	s.dialFrom(t, "127.0.0.9")
	s.expectAccepted(t) // over the per-client cap, but a proxy
	s.dialFrom(t, "127.0.0.1")
	s.expectAccepted(t)
	expectClosedByServer(t, s.dialFrom(t, "127.0.0.2"))
	expectClosedByServer(t, s.dialFrom(t, "127.0.0.9"))

	if got := valueOf(t, s.metrics.refusedConns.WithLabelValues(refusedTotal)); got != 2 {
		t.Errorf("refused connections (total) = %v, want 2", got)
	}
	if n := strings.Count(s.logs.String(), "too many connections open: refusing new ones"); n != 1 {
		t.Errorf("%d log lines about the total cap, want 1:\n%s", n, s.logs.String())
	}
}

func TestClientOfGroupsIPv6By64(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		a, b string
		same bool
	}{
		{"two IPv4 addresses", "192.0.2.1", "192.0.2.2", false},
		{"IPv4 and its mapped IPv6 form", "192.0.2.1", "::ffff:192.0.2.1", true},
		{"one IPv6 /64", "2001:db8:1:2::1", "2001:db8:1:2:ffff::9", true},
		{"two IPv6 /64s", "2001:db8:1:2::1", "2001:db8:1:3::1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := clientOf(netip.MustParseAddr(tt.a).Unmap())
			b := clientOf(netip.MustParseAddr(tt.b).Unmap())
			if (a == b) != tt.same {
				t.Errorf("clientOf(%s) = %v, clientOf(%s) = %v; same client: %v, want %v", tt.a, a, tt.b, b, a == b, tt.same)
			}
		})
	}
}

// A connection's slot is given back once, however often it is closed.
func TestLimitedConnReleasesOnce(t *testing.T) {
	t.Parallel()
	s := startLimited(t, ConnLimits{PerClient: 2})
	s.dialFrom(t, "127.0.0.1")
	first := s.expectAccepted(t)
	s.dialFrom(t, "127.0.0.1")
	s.expectAccepted(t)
	first.Close()
	first.Close()
	s.dialFrom(t, "127.0.0.1")
	s.expectAccepted(t)
	expectClosedByServer(t, s.dialFrom(t, "127.0.0.1"))
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var _ io.Writer = (*syncBuffer)(nil)

// valueOf reads a counter or gauge.
func valueOf(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		t.Fatal(err)
	}
	if out.Counter != nil {
		return out.Counter.GetValue()
	}
	return out.Gauge.GetValue()
}
