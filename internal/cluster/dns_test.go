package cluster_test

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"

	"github.com/regmirror/regmirror/internal/cluster"
)

// zone is a DNS server's single name, as a headless Service is: one A or
// AAAA record per replica, or a failure.
type zone struct {
	name string

	mu    sync.Mutex
	addrs []string
	rcode int
}

func (z *zone) set(rcode int, addrs ...string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.rcode, z.addrs = rcode, addrs
}

func (z *zone) ServeDNS(w dns.ResponseWriter, q *dns.Msg) {
	z.mu.Lock()
	defer z.mu.Unlock()
	m := new(dns.Msg)
	m.SetReply(q)
	m.Rcode = z.rcode
	for _, question := range q.Question {
		if !strings.EqualFold(question.Name, z.name) {
			m.Rcode = dns.RcodeNameError
			continue
		}
		if z.rcode == dns.RcodeSuccess {
			m.Answer = append(m.Answer, z.records(question)...)
		}
	}
	_ = w.WriteMsg(m)
}

func (z *zone) records(q dns.Question) []dns.RR {
	var rrs []dns.RR
	for _, a := range z.addrs {
		ip := net.ParseIP(a)
		hdr := dns.RR_Header{Name: q.Name, Rrtype: q.Qtype, Class: dns.ClassINET, Ttl: 5}
		switch {
		case q.Qtype == dns.TypeA && ip.To4() != nil:
			rrs = append(rrs, &dns.A{Hdr: hdr, A: ip.To4()})
		case q.Qtype == dns.TypeAAAA && ip.To4() == nil:
			rrs = append(rrs, &dns.AAAA{Hdr: hdr, AAAA: ip})
		}
	}
	return rrs
}

// startDNS serves z over UDP on a loopback port and returns a resolver
// that asks it, and only it.
func startDNS(t *testing.T, z *zone) *net.Resolver {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: z, NotifyStartedFunc: func() { close(started) }}
	served := make(chan error, 1)
	go func() { served <- srv.ActivateAndServe() }()
	select {
	case <-started:
	case err := <-served:
		t.Fatalf("DNS server: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Shutdown(); err != nil {
			t.Errorf("DNS server shutdown: %v", err)
		}
		<-served
	})
	addr := pc.LocalAddr().String()
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "udp", addr)
		},
	}
}

// A real resolver asking a real DNS server: the members follow the
// records, and a failing server leaves the last good members in place.
func TestRefreshFromDNS(t *testing.T) {
	t.Parallel()
	z := &zone{name: "regmirror.default.svc.test."}
	z.set(dns.RcodeSuccess, "10.0.0.1", "10.0.0.2", "fd00::3")
	p, err := cluster.New(cluster.Config{
		Self: "http://10.0.0.1:5000", DNSName: z.name, Port: 5000, Resolver: startDNS(t, z),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	assertMembers(t, p, "http://10.0.0.1:5000", "http://10.0.0.2:5000", "http://[fd00::3]:5000")

	z.set(dns.RcodeSuccess, "10.0.0.1", "10.0.0.4")
	if err := p.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	assertMembers(t, p, "http://10.0.0.1:5000", "http://10.0.0.4:5000")

	for name, rcode := range map[string]int{"SERVFAIL": dns.RcodeServerFailure, "NXDOMAIN": dns.RcodeNameError} {
		z.set(rcode)
		if err := p.Refresh(t.Context()); err == nil {
			t.Errorf("%s: Refresh succeeded", name)
		}
		assertMembers(t, p, "http://10.0.0.1:5000", "http://10.0.0.4:5000")
	}
}
