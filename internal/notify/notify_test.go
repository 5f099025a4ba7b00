package notify

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
)

// delivery is one POST a receiver got.
type delivery struct {
	header http.Header
	body   []byte
	events []Event
}

// receiver is a webhook receiver on loopback. Each delivery is handed to
// the test on got, in order, then answered with the status answer returns
// (200 when nil); answer may block to hang the receiver.
type receiver struct {
	url string
	got chan delivery
}

func newReceiver(t *testing.T, answer func(n int) int) *receiver {
	t.Helper()
	r := &receiver{got: make(chan delivery, 100)}
	var mu sync.Mutex
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			t.Errorf("receiver: reading the body: %v", err)
			return
		}
		var env Envelope
		if err := json.Unmarshal(body, &env); err != nil {
			t.Errorf("receiver: body is not an envelope: %v", err)
		}
		mu.Lock()
		n++
		nth := n
		mu.Unlock()
		r.got <- delivery{header: req.Header.Clone(), body: body, events: env.Events}
		status := http.StatusOK
		if answer != nil {
			status = answer(nth)
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL
	return r
}

// next returns the next delivery; the test's deadline is the only bound.
func (r *receiver) next(t *testing.T) delivery {
	t.Helper()
	return <-r.got
}

// start runs a Notifier for endpoints until the test ends.
func start(t *testing.T, endpoints []Endpoint, opts Options) (*Notifier, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts.Registerer = reg
	n, err := New(endpoints, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = n.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return n, reg
}

// value reads one sample of reg: name with the label values given in
// order of the metric's labels; 0 when it has none yet.
func value(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			var got []string
			for _, l := range m.GetLabel() {
				got = append(got, l.GetValue())
			}
			if slices.Equal(got, labels) {
				if m.GetCounter() != nil {
					return m.GetCounter().GetValue()
				}
				return m.GetGauge().GetValue()
			}
		}
	}
	return 0
}

var testDigest = digest.FromString("manifest")

func pushEvent(tag string) Event {
	return Event{Action: ActionPush, Target: Target{MediaType: "application/vnd.oci.image.manifest.v1+json",
		Digest: testDigest, Size: 8, Repository: "team/app", Tag: tag}}
}

// A delivery is a signed envelope in distribution's shape, with the
// configured headers, and each event carries its id, time and source.
func TestDeliveryIsSignedEnvelope(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, nil)
	secret := []byte("webhook-secret-1")
	n, _ := start(t, []Endpoint{{URL: rcv.url, Secret: secret, Headers: http.Header{"Authorization": {"Bearer receiver-token"}}}},
		Options{Source: Source{Addr: "mirror:5000", InstanceID: "instance-1"}})
	n.Notify(pushEvent("1"))

	d := rcv.next(t)
	if got := d.header.Get("Content-Type"); got != MediaType {
		t.Errorf("Content-Type = %q, want %q", got, MediaType)
	}
	if got := d.header.Get("Authorization"); got != "Bearer receiver-token" {
		t.Errorf("Authorization = %q, want the configured header", got)
	}
	sig := d.header.Get(SignatureHeader)
	if !Verify(secret, d.body, sig) {
		t.Errorf("%s = %q does not verify under the secret", SignatureHeader, sig)
	}
	if Verify([]byte("another-secret"), d.body, sig) {
		t.Error("the signature verifies under another secret")
	}
	if len(d.events) != 1 {
		t.Fatalf("got %d events, want 1", len(d.events))
	}
	e := d.events[0]
	if e.ID == "" || e.Timestamp.IsZero() || e.Source != (Source{Addr: "mirror:5000", InstanceID: "instance-1"}) {
		t.Errorf("event lacks id, timestamp or source: %+v", e)
	}
	if e.Action != ActionPush || e.Target.Digest != testDigest || e.Target.Tag != "1" || e.Target.Repository != "team/app" {
		t.Errorf("event = %+v, want the push of team/app:1", e)
	}
	// The JSON names are distribution's.
	var raw struct {
		Events []map[string]json.RawMessage `json:"events"`
	}
	if err := json.Unmarshal(d.body, &raw); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"id", "timestamp", "action", "target", "source"} {
		if _, ok := raw.Events[0][key]; !ok {
			t.Errorf("event has no %q: %s", key, d.body)
		}
	}
	var target map[string]any
	if err := json.Unmarshal(raw.Events[0]["target"], &target); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"mediaType", "digest", "size", "repository", "tag"} {
		if _, ok := target[key]; !ok {
			t.Errorf("target has no %q: %s", key, d.body)
		}
	}
}

// Without a secret, no signature header is sent (nothing to verify with).
func TestDeliveryWithoutSecretIsUnsigned(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, nil)
	n, _ := start(t, []Endpoint{{URL: rcv.url}}, Options{})
	n.Notify(pushEvent("1"))
	if sig := rcv.next(t).header.Get(SignatureHeader); sig != "" {
		t.Errorf("%s = %q without a secret", SignatureHeader, sig)
	}
}

// An endpoint's filter keeps the other actions from it; an endpoint
// without one gets everything.
func TestFilterByAction(t *testing.T) {
	t.Parallel()
	pushes, all := newReceiver(t, nil), newReceiver(t, nil)
	n, _ := start(t, []Endpoint{{URL: pushes.url, Actions: []string{ActionPush}}, {URL: all.url}}, Options{})
	n.Notify(Event{Action: ActionPull, Target: Target{Digest: testDigest, Repository: "docker.io/library/node"}})
	n.BreakerChanged("docker.io", true)
	n.Notify(pushEvent("1"))

	// Each endpoint's events go out in order: had the pull or the breaker
	// been queued for the filtered endpoint, it would come first.
	if got := actionsOf(t, pushes, 1); !slices.Equal(got, []string{ActionPush}) {
		t.Errorf("filtered endpoint got %v, want only the push", got)
	}
	if got := actionsOf(t, all, 3); !slices.Equal(got, []string{ActionPull, ActionBreakerOpen, ActionPush}) {
		t.Errorf("unfiltered endpoint got %v", got)
	}
}

// actionsOf collects the actions of r's deliveries until it has want.
func actionsOf(t *testing.T, r *receiver, want int) []string {
	t.Helper()
	var got []string
	for len(got) < want {
		for _, e := range r.next(t).events {
			got = append(got, e.Action)
		}
	}
	return got
}

// A delivery that fails is retried after a backoff that doubles; the
// events arrive once, and the failures are counted.
func TestRetryWithBackoffThenSuccess(t *testing.T) {
	t.Parallel()
	hold := make(chan struct{})
	rcv := newReceiver(t, func(n int) int {
		switch {
		case n <= 2:
			return http.StatusServiceUnavailable
		case n == 4:
			<-hold // the next delivery hangs: it counts nothing meanwhile
		}
		return http.StatusOK
	})
	t.Cleanup(func() { close(hold) })
	var mu sync.Mutex
	var waits []time.Duration
	sleep := func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		defer mu.Unlock()
		waits = append(waits, d)
		return nil
	}
	n, reg := start(t, []Endpoint{{Name: "ci", URL: rcv.url, Backoff: time.Second, Timeout: time.Hour}}, Options{Sleep: sleep})
	n.Notify(pushEvent("1"))
	for i := range 3 {
		if d := rcv.next(t); len(d.events) != 1 || d.events[0].Target.Tag != "1" {
			t.Fatalf("attempt %d carried %+v, want the one push", i+1, d.events)
		}
	}
	// A second event is delivered only after the first delivery ended,
	// metrics included; its own delivery hangs, counting nothing.
	n.Notify(pushEvent("2"))
	if d := rcv.next(t); d.events[0].Target.Tag != "2" {
		t.Fatalf("then got %+v, want the second push", d.events)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(waits, []time.Duration{time.Second, 2 * time.Second}) {
		t.Errorf("backoffs = %v, want 1s then 2s", waits)
	}
	if got := value(t, reg, "regmirror_notifications_failures_total", "ci"); got != 2 {
		t.Errorf("failures = %v, want 2", got)
	}
	if got := value(t, reg, "regmirror_notifications_sent_total", "ci"); got != 1 {
		t.Errorf("sent = %v, want 1 (the event once)", got)
	}
}

// Events that every retry fails to deliver are dropped and counted.
func TestUndeliverableEventsAreDropped(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, func(n int) int {
		if n <= 2 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	noWait := func(context.Context, time.Duration) error { return nil }
	n, reg := start(t, []Endpoint{{URL: rcv.url, Retries: 1}}, Options{Sleep: noWait})
	n.Notify(pushEvent("lost"))
	rcv.next(t)
	rcv.next(t)
	n.Notify(pushEvent("2"))
	if d := rcv.next(t); d.events[0].Target.Tag != "2" {
		t.Fatalf("after the retries: %+v, want the next event, not the lost one again", d.events)
	}
	if got := value(t, reg, "regmirror_notifications_dropped_total", "0", droppedUndeliverable); got != 1 {
		t.Errorf("dropped undeliverable = %v, want 1", got)
	}
}

// A receiver that hangs holds one delivery; Notify still returns at once,
// the queue holds QueueSize events and the rest are dropped and counted.
func TestHungReceiverDropsBeyondQueue(t *testing.T) {
	t.Parallel()
	arrived, release := make(chan struct{}), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs before srv.Close
	n, reg := start(t, []Endpoint{{Name: "hung", URL: srv.URL, QueueSize: 2, Timeout: time.Hour}}, Options{})
	n.Notify(pushEvent("held"))
	<-arrived // the receiver holds the first delivery

	for i := range 5 {
		n.Notify(pushEvent(string(rune('a' + i))))
	}
	if got := value(t, reg, "regmirror_notifications_dropped_total", "hung", droppedQueueFull); got != 3 {
		t.Errorf("dropped = %v, want 3 (5 events, room for 2)", got)
	}
	if got := value(t, reg, "regmirror_notifications_queued", "hung"); got != 2 {
		t.Errorf("queued = %v, want 2", got)
	}
}

// Endpoints with a bad URL or an unknown action are refused.
func TestNewRefusesBadEndpoints(t *testing.T) {
	t.Parallel()
	for name, ep := range map[string]Endpoint{
		"no scheme":      {URL: "example.com/hook"},
		"ftp":            {URL: "ftp://example.com/hook"},
		"unknown action": {URL: "http://127.0.0.1/hook", Actions: []string{"mount"}},
	} {
		if _, err := New([]Endpoint{ep}, Options{}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// A nil Notifier takes every call and does nothing.
func TestNilNotifierIsSilent(t *testing.T) {
	t.Parallel()
	var n *Notifier
	n.Notify(pushEvent("1"))
	n.BreakerChanged("docker.io", true)
	n.PrefetchFailed("docker.io", "library/node", "20", nil)
	n.Evicted(testDigest, false, 1)
	if err := n.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// PrefetchFailed names the image and says why; a digest reference goes in
// target.digest, a tag in target.tag.
func TestPrefetchFailedEvent(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, nil)
	n, _ := start(t, []Endpoint{{URL: rcv.url}}, Options{})
	n.PrefetchFailed("registry.k8s.io", "kube-apiserver", "v1.31.9", errors.New("manifest unknown"))
	n.PrefetchFailed("docker.io", "library/node", testDigest.String(), nil)
	var got []Event
	for len(got) < 2 {
		got = append(got, rcv.next(t).events...)
	}
	want := []Event{
		{Action: ActionPrefetchFailure, Reason: "manifest unknown",
			Target: Target{Registry: "registry.k8s.io", Repository: "kube-apiserver", Tag: "v1.31.9"}},
		{Action: ActionPrefetchFailure, Target: Target{Registry: "docker.io", Repository: "library/node", Digest: testDigest}},
	}
	for i := range want {
		if got[i].Action != want[i].Action || got[i].Reason != want[i].Reason || got[i].Target != want[i].Target {
			t.Errorf("event %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}
