package notify

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
)

// Defaults of an Endpoint's delivery settings.
const (
	// DefaultTimeout bounds one delivery attempt: a receiver is expected
	// to answer at once and work on the event later.
	DefaultTimeout = 5 * time.Second
	// DefaultRetries is how often a failed delivery is tried again
	// before its events are dropped.
	DefaultRetries = 3
	// DefaultBackoff is the wait before the first retry; each next one
	// waits twice as long, up to MaxBackoff.
	DefaultBackoff = time.Second
	// MaxBackoff caps the wait between retries.
	MaxBackoff = time.Minute
	// DefaultQueueSize is how many events wait for an endpoint before new
	// ones are dropped.
	DefaultQueueSize = 1000
)

// maxBatch bounds the events one delivery carries: a receiver that was
// down gets the backlog in a few requests, not one huge body.
const maxBatch = 100

// Endpoint is one receiver of events. Zero values mean the defaults.
type Endpoint struct {
	// Name labels the endpoint's metrics and logs; empty means its index.
	Name string
	// URL is where events are POSTed (http or https).
	URL string
	// Headers are added to every delivery, e.g. Authorization.
	Headers http.Header
	// Secret, when set, signs every body (SignatureHeader).
	Secret []byte
	// Actions, when not empty, are the only actions sent here.
	Actions []string
	// Timeout bounds one attempt; Retries is how often a failed one is
	// repeated (negative: never), waiting Backoff, then twice as long
	// each time, up to MaxBackoff.
	Timeout time.Duration
	Retries int
	Backoff time.Duration
	// QueueSize is how many events may wait; more are dropped.
	QueueSize int
}

func (e Endpoint) withDefaults() Endpoint {
	if e.Timeout <= 0 {
		e.Timeout = DefaultTimeout
	}
	if e.Retries == 0 {
		e.Retries = DefaultRetries
	}
	if e.Backoff <= 0 {
		e.Backoff = DefaultBackoff
	}
	if e.QueueSize <= 0 {
		e.QueueSize = DefaultQueueSize
	}
	return e
}

// validate checks what New cannot work without.
func (e Endpoint) validate() error {
	u, err := url.Parse(e.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("the URL must be an http:// or https:// URL")
	}
	for _, a := range e.Actions {
		if !slices.Contains(Actions, a) {
			return fmt.Errorf("unknown action %q (known: %v)", a, Actions)
		}
	}
	return nil
}

// Options are a Notifier's collaborators; every field may be zero.
type Options struct {
	// Source names this mirror in every event.
	Source     Source
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Transport sends the deliveries; nil means one that honours
	// HTTPS_PROXY and NO_PROXY like any Go program.
	Transport http.RoundTripper
	// Now stamps events; nil means time.Now.
	Now func() time.Time
	// Sleep waits out a backoff; nil means a timer. Tests replace it.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Notifier sends events to its endpoints. Notify is safe for concurrent
// use and never blocks; a nil *Notifier drops every event, so callers need
// no check for "webhooks off".
type Notifier struct {
	endpoints []*endpoint
	source    Source
	log       *slog.Logger
	now       func() time.Time
	sleep     func(ctx context.Context, d time.Duration) error
	client    *http.Client
	metrics   *metrics
}

// endpoint is an Endpoint with its queue.
type endpoint struct {
	Endpoint
	label string
	queue chan Event
}

// New returns a Notifier for endpoints. Run must run for events to go out.
func New(endpoints []Endpoint, opts Options) (*Notifier, error) {
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("notifications: %w", err)
	}
	n := &Notifier{source: opts.Source, log: opts.Logger, now: opts.Now, sleep: opts.Sleep, metrics: m}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	if n.now == nil {
		n.now = time.Now
	}
	if n.sleep == nil {
		n.sleep = sleepContext
	}
	transport := opts.Transport
	if transport == nil {
		transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	// A redirect is not followed: the signed body goes where the
	// operator said, or the delivery fails.
	n.client = &http.Client{Transport: transport, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	for i, e := range endpoints {
		if err := e.validate(); err != nil {
			return nil, fmt.Errorf("notifications endpoint %d: %w", i, err)
		}
		e = e.withDefaults()
		label := e.Name
		if label == "" {
			label = strconv.Itoa(i)
		}
		n.endpoints = append(n.endpoints, &endpoint{Endpoint: e, label: label, queue: make(chan Event, e.QueueSize)})
		m.queued.WithLabelValues(label).Set(0)
	}
	return n, nil
}

// Notify stamps e (ID, Timestamp, Source) and queues it for every
// endpoint whose filter takes its action. An endpoint whose queue is full
// loses it, counted in regmirror_notifications_dropped_total.
func (n *Notifier) Notify(e Event) {
	if n == nil || len(n.endpoints) == 0 {
		return
	}
	e.ID = rand.Text()
	e.Timestamp = n.now().UTC()
	e.Source = n.source
	for _, ep := range n.endpoints {
		if len(ep.Actions) > 0 && !slices.Contains(ep.Actions, e.Action) {
			continue
		}
		select {
		case ep.queue <- e:
			n.metrics.queued.WithLabelValues(ep.label).Inc()
		default:
			n.metrics.dropped.WithLabelValues(ep.label, droppedQueueFull).Inc()
		}
	}
}

// Run delivers queued events until ctx ends; what is still queued then is
// lost. It returns nil.
func (n *Notifier) Run(ctx context.Context) error {
	if n == nil {
		return nil
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, ep := range n.endpoints {
		g.Go(func() error {
			n.deliverAll(gctx, ep)
			return nil
		})
	}
	return g.Wait()
}

// deliverAll sends ep's events, a batch at a time, until ctx ends.
func (n *Notifier) deliverAll(ctx context.Context, ep *endpoint) {
	for {
		var batch []Event
		select {
		case <-ctx.Done():
			return
		case e := <-ep.queue:
			batch = append(batch, e)
		}
	more:
		for len(batch) < maxBatch {
			select {
			case e := <-ep.queue:
				batch = append(batch, e)
			default:
				break more
			}
		}
		n.metrics.queued.WithLabelValues(ep.label).Sub(float64(len(batch)))
		n.deliver(ctx, ep, batch)
	}
}

// deliver sends one batch, retrying with backoff; a batch that cannot be
// delivered is dropped and counted.
func (n *Notifier) deliver(ctx context.Context, ep *endpoint, batch []Event) {
	body, err := json.Marshal(Envelope{Events: batch})
	if err != nil { // only plain strings and numbers: cannot happen
		n.log.Error("webhook events do not encode", "endpoint", ep.label, "err", err)
		return
	}
	wait := ep.Backoff
	for attempt := 0; ; attempt++ {
		err = n.post(ctx, ep, body)
		if err == nil {
			n.metrics.sent.WithLabelValues(ep.label).Add(float64(len(batch)))
			return
		}
		if ctx.Err() != nil {
			return
		}
		n.metrics.failures.WithLabelValues(ep.label).Inc()
		if attempt >= ep.Retries {
			break
		}
		n.log.Debug("webhook delivery failed: retrying", "endpoint", ep.label, "err", err, "backoff", wait)
		if n.sleep(ctx, wait) != nil {
			return
		}
		wait = min(2*wait, MaxBackoff)
	}
	n.metrics.dropped.WithLabelValues(ep.label, droppedUndeliverable).Add(float64(len(batch)))
	n.log.Warn("webhook events dropped: the endpoint did not take them", "endpoint", ep.label,
		"events", len(batch), "err", err)
}

// post makes one delivery attempt: any 2xx answer is success.
func (n *Notifier) post(ctx context.Context, ep *endpoint, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, ep.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook request: %w", err)
	}
	for k, vs := range ep.Headers {
		req.Header[k] = slices.Clone(vs)
	}
	req.Header.Set("Content-Type", MediaType)
	if len(ep.Secret) > 0 {
		req.Header.Set(SignatureHeader, Sign(ep.Secret, body))
	}
	resp, err := n.client.Do(req)
	if err != nil {
		// The URL may hold a token in its query: name only the endpoint.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return fmt.Errorf("posting to endpoint %s: %w", ep.label, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // keeps the connection for reuse
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("endpoint %s answered %s", ep.label, resp.Status)
	}
	return nil
}

func sleepContext(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
