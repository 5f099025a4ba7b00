package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/internal/testclock"
)

func TestBreaker(t *testing.T) {
	t.Parallel()
	// step is one thing that happens to the breaker, and what it must say.
	type step struct {
		advance time.Duration
		record  *outcome // nil: ask for admission instead
		probe   bool     // the admission (or the recorded operation) is a probe
		admit   bool
		state   breakerState
	}
	// fail is a failure the consecutive rule counts; the ratio rule is
	// tested below.
	fail, ok, neither := unreachable, answered, inconclusive
	tests := []struct {
		name      string
		threshold int
		steps     []step
	}{
		{"failures below the threshold keep it closed", 3, []step{
			{record: &fail, state: closed},
			{record: &fail, state: closed},
			{admit: true, state: closed},
		}},
		{"an answer resets the count", 3, []step{
			{record: &fail, state: closed},
			{record: &fail, state: closed},
			{record: &ok, state: closed},
			{record: &fail, state: closed},
			{record: &fail, state: closed},
			{admit: true, state: closed},
		}},
		{"opens at the threshold until the cool-down ends", 3, []step{
			{record: &fail}, {record: &fail}, {record: &fail, state: open},
			{admit: false, state: open},
			{advance: 29 * time.Second, admit: false, state: open},
			{advance: time.Second, admit: true, probe: true, state: halfOpen},
			{admit: false, state: halfOpen}, // one probe at a time
			{record: &ok, probe: true, state: closed},
			{admit: true, state: closed},
		}},
		{"a failed probe opens it again", 1, []step{
			{record: &fail, state: open},
			{advance: 30 * time.Second, admit: true, probe: true, state: halfOpen},
			{record: &fail, probe: true, state: open},
			{advance: 29 * time.Second, admit: false, state: open},
			{advance: time.Second, admit: true, probe: true, state: halfOpen},
		}},
		{"an inconclusive probe lets the next operation probe", 1, []step{
			{record: &fail, state: open},
			{advance: 30 * time.Second, admit: true, probe: true, state: halfOpen},
			{record: &neither, probe: true, state: halfOpen},
			{admit: true, probe: true, state: halfOpen},
		}},
		{"inconclusive outcomes do not count", 2, []step{
			{record: &fail}, {record: &neither}, {record: &neither},
			{record: &fail, state: open},
		}},
		{"a negative threshold never opens", -1, []step{
			{record: &fail}, {record: &fail}, {record: &fail}, {record: &fail},
			{admit: true, state: closed},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clk := testclock.New(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC))
			b := testBreaker(t, Config{BreakerThreshold: tt.threshold}, clk)
			for i, s := range tt.steps {
				clk.Advance(s.advance)
				if s.record != nil {
					b.record(s.probe, *s.record)
				} else {
					probe, _, err := b.admit()
					if (err == nil) != s.admit || probe != s.probe {
						t.Fatalf("step %d: admit = probe %v, %v; want admitted %v probe %v", i, probe, err, s.admit, s.probe)
					}
					if err != nil && !errors.Is(err, ErrCircuitOpen) {
						t.Fatalf("step %d: refusal %v is not ErrCircuitOpen", i, err)
					}
				}
				if got := b.current(); got != s.state {
					t.Fatalf("step %d: state %v, want %v", i, got, s.state)
				}
			}
		})
	}
}

func TestOutcomeOf(t *testing.T) {
	t.Parallel()
	o := opError{host: "docker.io", op: "head manifest", repo: "library/node", ref: "10", notFoundCode: "MANIFEST_UNKNOWN"}
	tests := []struct {
		name string
		err  error
		want outcome
	}{
		{"success", nil, answered},
		{"404", o.fromStatus(404, nil), answered},
		{"401", o.fromStatus(401, nil), answered},
		{"429", o.fromStatus(429, nil), answered},
		{"500", o.fromStatus(500, nil), failed},
		{"503", o.fromStatus(503, nil), failed},
		{"408", o.fromStatus(408, nil), failed},
		{"refused", o.fromErr(&net.OpError{Op: "dial", Err: errors.New("connection refused")}), unreachable},
		{"deadline", o.fromErr(fmt.Errorf("get: %w", context.DeadlineExceeded)), unreachable},
		{"caller hung up", o.fromErr(fmt.Errorf("get: %w", context.Canceled)), inconclusive},
		{"credentials", o.fromErr(fmt.Errorf("%w: helper crashed", errCredentials)), inconclusive},
		{"skipped: open", o.skipped(0, "UNAVAILABLE", ErrCircuitOpen, time.Time{}), inconclusive},
		{"skipped: paused", o.skipped(429, "TOOMANYREQUESTS", ErrRateLimited, time.Time{}), inconclusive},
	}
	for _, tt := range tests {
		if got := outcomeOf(tt.err); got != tt.want {
			t.Errorf("%s: outcome %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		header string
		want   time.Duration
	}{
		{"", defaultRetryAfter},
		{"garbage", defaultRetryAfter},
		{"120", 2 * time.Minute},
		{" 7 ", 7 * time.Second},
		{"0", 0},
		{"-5", 0},
		{"99999999999", maxRetryAfter},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{now.Add(48 * time.Hour).Format(http.TimeFormat), maxRetryAfter},
		{"Sunday, 01-Nov-26 12:00:30 GMT", 30 * time.Second}, // RFC 850, still allowed
	}
	for _, tt := range tests {
		if got := retryAfter(tt.header, now); got != tt.want {
			t.Errorf("retryAfter(%q) = %v, want %v", tt.header, got, tt.want)
		}
	}
}

// A 429 is not retried, and no request reaches the upstream until its
// Retry-After has passed; then the upstream is asked again.
func TestRateLimitPausesUpstream(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t, registrytest.Options{})
	if _, err := reg.PushImage("library/alpine", "3", registrytest.ImageOptions{}); err != nil {
		t.Fatal(err)
	}
	clk := testclock.New(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC))
	c, sleeps := newClient(t, reg, Config{}, nil, Options{Now: clk.Now})
	if _, err := c.HeadManifest(context.Background(), "library/alpine", "3"); err != nil {
		t.Fatal(err)
	}
	reg.Reset()
	reg.FailNext(registrytest.KindManifest, 1, http.StatusTooManyRequests) // with Retry-After: 1

	_, err := c.HeadManifest(context.Background(), "library/alpine", "3")
	if e := asError(t, err); e.HTTPStatus() != http.StatusTooManyRequests || !e.Temporary() {
		t.Fatalf("got %v, want a temporary 429", err)
	}
	_, _, err = c.GetManifest(context.Background(), "library/alpine", "3")
	if e := asError(t, err); !errors.Is(err, ErrRateLimited) || e.HTTPStatus() != http.StatusTooManyRequests || !e.Temporary() {
		t.Fatalf("during the pause: %v, want a temporary 429 wrapping ErrRateLimited", err)
	}
	if n := len(reg.Requests()); n != 1 || len(sleeps.get()) != 0 {
		t.Fatalf("%d upstream requests and %d retries, want 1 and 0: %+v", n, len(sleeps.get()), reg.Requests())
	}

	clk.Advance(time.Second)
	if _, err := c.HeadManifest(context.Background(), "library/alpine", "3"); err != nil {
		t.Fatalf("after Retry-After: %v", err)
	}
	if n := reg.ManifestHeads("library/alpine", "3"); n != 2 {
		t.Fatalf("%d HEADs, want 2", n)
	}
}

// Once BreakerMinRequests operations all failed the upstream is skipped
// without a request until the cool-down ends; an answer to the probe closes it.
func TestBreakerSkipsFailingUpstream(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t, registrytest.Options{})
	if _, err := reg.PushImage("library/alpine", "3", registrytest.ImageOptions{}); err != nil {
		t.Fatal(err)
	}
	clk := testclock.New(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC))
	prom := prometheus.NewRegistry()
	c, _ := newClient(t, reg, Config{BreakerMinRequests: 2, BreakerCooldown: time.Minute}, nil, Options{Now: clk.Now, Registerer: prom})
	head := func() error {
		_, err := c.HeadManifest(context.Background(), "library/alpine", "3")
		return err
	}
	reg.SetDown(true)
	for range 2 {
		if err := head(); errors.Is(err, ErrCircuitOpen) || asError(t, err).HTTPStatus() != http.StatusServiceUnavailable {
			t.Fatalf("while closed: %v, want the upstream's 503", err)
		}
	}
	sent := len(reg.Requests())
	err := head()
	if e := asError(t, err); !errors.Is(err, ErrCircuitOpen) || !e.Temporary() || e.HTTPStatus() != 0 {
		t.Fatalf("after 2 failures: %v, want a temporary error wrapping ErrCircuitOpen", err)
	}
	if n := len(reg.Requests()); n != sent {
		t.Fatalf("an open breaker sent %d requests", n-sent)
	}
	if got := c.breaker.current(); got != open {
		t.Fatalf("state %v, want open", got)
	}
	if state, skipped := metricValue(t, prom, "regmirror_upstream_breaker_state"),
		metricValue(t, prom, "regmirror_upstream_skipped_total"); state != 1 || skipped != 1 {
		t.Fatalf("breaker state gauge %v and skipped counter %v, want 1 and 1", state, skipped)
	}

	reg.SetDown(false)
	clk.Advance(time.Minute)
	if err := head(); err != nil {
		t.Fatalf("probe after the cool-down: %v", err)
	}
	if got := c.breaker.current(); got != closed {
		t.Fatalf("state after a good probe %v, want closed", got)
	}
	if state := metricValue(t, prom, "regmirror_upstream_breaker_state"); state != 0 {
		t.Fatalf("breaker state gauge %v after a good probe, want 0", state)
	}
}

// metricValue is the value of the one series of a gauge or counter in reg.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name || len(f.GetMetric()) != 1 {
			continue
		}
		m := f.GetMetric()[0]
		if m.GetGauge() != nil {
			return m.GetGauge().GetValue()
		}
		return m.GetCounter().GetValue()
	}
	t.Fatalf("no single series of %s", name)
	return 0
}

// hangingListener accepts connections and never answers, like an upstream
// whose process is wedged.
func hangingListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return "http://" + ln.Addr().String()
}

// Config.Timeout ends an operation on an upstream that never answers, the
// token handshake and retries included, even when the response-header
// timeout alone would wait much longer.
func TestTimeoutBoundsHangingUpstream(t *testing.T) {
	t.Parallel()
	c, err := New(Config{
		Host:                  "docker.io",
		URL:                   hangingListener(t),
		ResponseHeaderTimeout: time.Hour,
		Timeout:               200 * time.Millisecond,
	}, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	_, err = c.HeadManifest(context.Background(), "library/node", "10")
	if e := asError(t, err); !errors.Is(err, context.DeadlineExceeded) || e.HTTPStatus() != 0 || !e.Temporary() {
		t.Fatalf("got %v, want a temporary deadline error without status", err)
	}
}

// testBreaker is the breaker a client with cfg would have (defaults
// filled in), on clk.
func testBreaker(t *testing.T, cfg Config, clk *testclock.Clock) *breaker {
	t.Helper()
	cfg.URL = "http://registry.test"
	cfg, _, err := cfg.validate()
	if err != nil {
		t.Fatal(err)
	}
	return newBreaker(cfg, clk.Now, func(breakerState, breakerState, time.Time) {})
}

// The ratio rule, with the default settings: a window of 30s, judged from
// 20 operations, opening at half of them failed.
func TestBreakerJudgesFailureRatio(t *testing.T) {
	t.Parallel()
	type op struct {
		every   time.Duration // between operations
		outcome func(i int) outcome
	}
	pattern := func(fails ...int) func(int) outcome {
		return func(i int) outcome {
			for _, f := range fails {
				if i%10 == f {
					return failed
				}
			}
			return answered
		}
	}
	tests := []struct {
		name   string
		phases []struct {
			op
			n int
		}
		opensAt int // the operation (counted from 1) after which it is open; 0: never
	}{
		{name: "30% of 5xx in bursts of three stays closed", phases: []struct {
			op
			n int
		}{{op{100 * time.Millisecond, pattern(0, 1, 2)}, 6000}}},
		{name: "30% unreachable, never three in a row, stays closed", phases: []struct {
			op
			n int
		}{{op{100 * time.Millisecond, func(i int) outcome {
			if i%10 == 0 || i%10 == 4 || i%10 == 7 {
				return unreachable
			}
			return answered
		}}, 6000}}},
		{name: "every operation failing opens it at the 20th, 19s in", opensAt: 20, phases: []struct {
			op
			n int
		}{{op{time.Second, func(int) outcome { return failed }}, 25}}},
		{name: "too few operations in the window are no verdict", phases: []struct {
			op
			n int
		}{{op{2 * time.Second, func(int) outcome { return failed }}, 100}}},
		{name: "failures age out of the window", phases: []struct {
			op
			n int
		}{
			{op{time.Second, func(int) outcome { return failed }}, 15},
			{op{30 * time.Second, func(int) outcome { return answered }}, 1},
			{op{100 * time.Millisecond, func(int) outcome { return answered }}, 10},
			{op{100 * time.Millisecond, func(int) outcome { return failed }}, 9},
		}},
		{name: "half failing in the window opens it", opensAt: 15 + 1 + 10 + 11, phases: []struct {
			op
			n int
		}{
			{op{time.Second, func(int) outcome { return failed }}, 15},
			{op{30 * time.Second, func(int) outcome { return answered }}, 1},
			{op{100 * time.Millisecond, func(int) outcome { return answered }}, 10},
			{op{100 * time.Millisecond, func(int) outcome { return failed }}, 11},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clk := testclock.New(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC))
			b := testBreaker(t, Config{}, clk)
			n := 0
			for _, ph := range tt.phases {
				for i := range ph.n {
					clk.Advance(ph.every)
					if _, _, err := b.admit(); err != nil {
						t.Fatalf("operation %d refused: %v", n+1, err)
					}
					b.record(false, ph.outcome(i))
					n++
					if want := n >= tt.opensAt && tt.opensAt > 0; (b.current() == open) != want {
						t.Fatalf("after operation %d: state %v, want open %v", n, b.current(), want)
					}
					if b.current() == open {
						return
					}
				}
			}
		})
	}
}

// Through a real client: an upstream failing 30% of requests with a 500
// keeps being asked with the default settings; one failing every request
// is skipped once the window holds 20 operations.
func TestBreakerRatioAgainstRegistry(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t, registrytest.Options{})
	if _, err := reg.PushImage("library/alpine", "3", registrytest.ImageOptions{}); err != nil {
		t.Fatal(err)
	}
	clk := testclock.New(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC))
	c, _ := newClient(t, reg, Config{Retries: -1}, nil, Options{Now: clk.Now})
	head := func() error {
		_, err := c.HeadManifest(context.Background(), "library/alpine", "3")
		return err
	}
	for i := range 200 {
		clk.Advance(100 * time.Millisecond)
		if i%10 < 3 {
			reg.FailNext(registrytest.KindManifest, 1, http.StatusInternalServerError)
		}
		err := head()
		if errors.Is(err, ErrCircuitOpen) {
			t.Fatalf("request %d skipped at a 30%% failure ratio", i+1)
		}
		if (err != nil) != (i%10 < 3) {
			t.Fatalf("request %d: %v", i+1, err)
		}
	}

	// The successes age out of the window; then every request fails.
	clk.Advance(DefaultBreakerWindow)
	reg.SetDown(true)
	for i := range DefaultBreakerMinRequests {
		clk.Advance(time.Second)
		if err := head(); errors.Is(err, ErrCircuitOpen) {
			t.Fatalf("request %d of a failing upstream skipped before the window held %d", i+1, DefaultBreakerMinRequests)
		}
	}
	sent := len(reg.Requests())
	clk.Advance(time.Second)
	if err := head(); !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("after a window of failures: %v, want ErrCircuitOpen", err)
	}
	if n := len(reg.Requests()); n != sent {
		t.Fatalf("the open breaker sent %d requests", n-sent)
	}
}

// An upstream refusing connections is skipped after breaker_threshold
// requests in a row, long before the ratio's window would hold enough.
func TestBreakerOpensFastWhenUnreachable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close() // connections to it are refused from now on
	c, err := New(Config{Host: "docker.io", URL: url, Retries: -1}, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	for i := range DefaultBreakerThreshold {
		_, err := c.HeadManifest(context.Background(), "library/node", "10")
		if e := asError(t, err); errors.Is(err, ErrCircuitOpen) || e.HTTPStatus() != 0 {
			t.Fatalf("request %d: %v, want a refused connection", i+1, err)
		}
	}
	if _, err := c.HeadManifest(context.Background(), "library/node", "10"); !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("after %d refused connections: %v, want ErrCircuitOpen", DefaultBreakerThreshold, err)
	}
}
