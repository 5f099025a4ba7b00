package cluster_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/regmirror/regmirror/internal/cluster"
)

func TestParsePeer(t *testing.T) {
	t.Parallel()
	valid := map[string]string{
		"http://10.0.0.1:5000":         "http://10.0.0.1:5000",
		"HTTP://10.0.0.1:5000/":        "http://10.0.0.1:5000",
		"http://[FD00:0::1]:5000":      "http://[fd00::1]:5000",
		"https://Mirror-0.Regmirror":   "https://mirror-0.regmirror",
		"http://[::ffff:10.0.0.1]:500": "http://10.0.0.1:500",
	}
	for raw, want := range valid {
		got, err := cluster.ParsePeer(raw)
		if err != nil || got.URL != want {
			t.Errorf("ParsePeer(%q) = %q, %v; want %q", raw, got.URL, err, want)
		}
	}
	for _, raw := range []string{
		"", "10.0.0.1:5000", "ftp://10.0.0.1", "http://", "http://:5000",
		"http://10.0.0.1:5000/v2", "http://user:pw@10.0.0.1", "http://10.0.0.1?x=1",
		"http://10.0.0.1#f", "http://10.0.0.1:port",
	} {
		if got, err := cluster.ParsePeer(raw); err == nil {
			t.Errorf("ParsePeer(%q) = %q; want an error", raw, got.URL)
		}
	}
}

func TestStaticMembers(t *testing.T) {
	t.Parallel()
	p, err := cluster.New(cluster.Config{
		Self: "http://10.0.0.2:5000",
		URLs: []string{"http://10.0.0.3:5000", "http://10.0.0.1:5000", "HTTP://10.0.0.3:5000/"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"http://10.0.0.1:5000", "http://10.0.0.2:5000", "http://10.0.0.3:5000"}
	assertMembers(t, p, want...)
	p.Snapshot()[0] = cluster.Peer{URL: "http://changed"}
	assertMembers(t, p, want...)
	if err := p.Run(t.Context()); err != nil {
		t.Fatalf("Run without a DNS name: %v", err)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]cluster.Config{
		"no self":           {URLs: []string{"http://10.0.0.1:5000"}},
		"bad peer":          {Self: "http://10.0.0.1:5000", URLs: []string{"10.0.0.2:5000"}},
		"list and name":     {Self: "http://10.0.0.1:5000", URLs: []string{"http://10.0.0.2:5000"}, DNSName: "peers", Port: 5000},
		"name no port":      {Self: "http://10.0.0.1:5000", DNSName: "peers"},
		"name bad port":     {Self: "http://10.0.0.1:5000", DNSName: "peers", Port: 70000},
		"name bad scheme":   {Self: "http://10.0.0.1:5000", DNSName: "peers", Port: 5000, Scheme: "ftp"},
		"negative interval": {Self: "http://10.0.0.1:5000", DNSName: "peers", Port: 5000, Interval: -time.Second},
	} {
		if _, err := cluster.New(cfg); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
}

// fakeResolver answers lookups with what the test sets: the DNS path's
// timing is tested in a synctest bubble, where no real server can answer.
type fakeResolver struct {
	mu      sync.Mutex
	addrs   []string
	err     error
	lookups int
}

func (f *fakeResolver) LookupHost(_ context.Context, _ string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookups++
	return slices.Clone(f.addrs), f.err
}

func (f *fakeResolver) answer(addrs []string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.addrs, f.err = addrs, err
}

// syncBuffer collects log lines written by Run's goroutine.
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

func TestRunResolvesOnItsInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		res := &fakeResolver{addrs: []string{"10.0.0.1", "10.0.0.2"}}
		var logs syncBuffer
		p, err := cluster.New(cluster.Config{
			Self: "http://10.0.0.1:5000", DNSName: "regmirror.default.svc", Port: 5000,
			Interval: 30 * time.Second, Resolver: res, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		assertMembers(t, p, "http://10.0.0.1:5000") // only self before the first lookup
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()
		synctest.Wait()
		assertMembers(t, p, "http://10.0.0.1:5000", "http://10.0.0.2:5000")

		res.answer([]string{"10.0.0.3", "10.0.0.2", "10.0.0.1"}, nil)
		time.Sleep(29 * time.Second)
		synctest.Wait()
		assertMembers(t, p, "http://10.0.0.1:5000", "http://10.0.0.2:5000")
		time.Sleep(time.Second)
		synctest.Wait()
		three := []string{"http://10.0.0.1:5000", "http://10.0.0.2:5000", "http://10.0.0.3:5000"}
		assertMembers(t, p, three...)

		// A failed lookup and an empty answer keep the last good members.
		res.answer(nil, errors.New("server misbehaving"))
		time.Sleep(30 * time.Second)
		synctest.Wait()
		assertMembers(t, p, three...)
		res.answer(nil, nil)
		time.Sleep(30 * time.Second)
		synctest.Wait()
		assertMembers(t, p, three...)

		// A replica not yet in the answer (not ready) still counts itself.
		res.answer([]string{"10.0.0.3"}, nil)
		time.Sleep(30 * time.Second)
		synctest.Wait()
		assertMembers(t, p, "http://10.0.0.1:5000", "http://10.0.0.3:5000")

		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run = %v after cancel; want nil", err)
		}
		if res.lookups != 5 {
			t.Errorf("%d lookups; want 5, at 0, 30, 60, 90 and 120s", res.lookups)
		}
		if n := strings.Count(logs.String(), "keeping the last members"); n != 2 {
			t.Errorf("%d warnings for 2 failed resolutions:\n%s", n, logs.String())
		}
	})
}

func assertMembers(t *testing.T, p *cluster.Peers, want ...string) {
	t.Helper()
	var got []string
	for _, m := range p.Snapshot() {
		got = append(got, m.URL)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("members = %v; want %v", got, want)
	}
}
