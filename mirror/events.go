package mirror

import (
	"context"
	"io"
	"net/http"
	"sync"

	"github.com/opencontainers/go-digest"
)

// The actions of the events the mirror reports.
const (
	// EventPush: a manifest was pushed to a hosted repository (one per
	// manifest PUT; blob uploads report none).
	EventPush = "push"
	// EventDelete: a hosted manifest or tag was deleted.
	EventDelete = "delete"
	// EventPull: a cache miss was filled from the upstream: a manifest
	// once stored, a blob once the client that started its download has
	// read it whole (verified). Hits and coalesced waiters report none.
	EventPull = "pull"
)

// Event is something the mirror did that webhooks may report. It holds no
// credentials.
type Event struct {
	Action string
	// Repository is a hosted name ("team/app") or a cached repository with
	// its registry ("docker.io/library/node"); Registry is the upstream
	// host of a pull.
	Repository string
	Registry   string
	Tag        string
	Digest     digest.Digest
	MediaType  string
	Size       int64
	// URL is where the content is served, as the client addressed it.
	URL string
	// Request is the client request that caused the event; Actor the user
	// it logged in as, if any.
	Request EventRequest
	Actor   string
}

// EventRequest describes a client request for an event.
type EventRequest struct {
	ID        string
	Addr      string // the client's address, as the edge established it
	Host      string
	Method    string
	UserAgent string
}

// Events hears of what the mirror does. Notify runs on the request path
// and must return at once, dropping the event rather than waiting.
type Events interface {
	Notify(Event)
}

// eventRequestKey is the context key of the request an event is about.
type eventRequestKey struct{}

// eventRequest is an EventRequest with the scheme the client used, for
// URLs.
type eventRequest struct {
	EventRequest
	scheme string
}

// withEventRequest remembers r's description for the events its handling
// causes, including those of fills it starts and that outlive it.
func withEventRequest(ctx context.Context, r *http.Request) context.Context {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return context.WithValue(ctx, eventRequestKey{}, eventRequest{scheme: scheme, EventRequest: EventRequest{
		ID:        r.Header.Get(requestIDHeader),
		Addr:      r.RemoteAddr,
		Host:      r.Host,
		Method:    r.Method,
		UserAgent: r.UserAgent(),
	}})
}

// notify completes e with the request of ctx and hands it on, if anyone
// listens. what ("manifests" or "blobs") and reference make e.URL; name is
// the repository as the client wrote it.
func (m *Mirror) notify(ctx context.Context, e Event, name, what, reference string) {
	if m.events == nil {
		return
	}
	req, _ := ctx.Value(eventRequestKey{}).(eventRequest)
	e.Request = req.EventRequest
	if req.Host != "" {
		e.URL = req.scheme + "://" + req.Host + "/v2/" + name + "/" + what + "/" + reference
	}
	m.events.Notify(e)
}

// notifyAtEnd calls done once, when the last byte of a blob body has been
// read: the cache yields it only after the digest has been verified.
type notifyAtEnd struct {
	io.ReadCloser
	pos, size int64 // size is -1 when unknown: then at io.EOF
	once      sync.Once
	done      func()
}

func (r *notifyAtEnd) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.pos += int64(n)
	if (r.size >= 0 && r.pos >= r.size) || err == io.EOF {
		r.once.Do(r.done)
	}
	return n, err
}

// notifyPull reports a cache miss of t filled from its upstream.
func (m *Mirror) notifyPull(ctx context.Context, t target, what string, d digest.Digest, mediaType string, size int64) {
	name := t.cacheKey() // an address the mirror answers for any registry
	if t.host == m.defaultHost {
		name = t.path
	}
	m.notify(ctx, Event{Action: EventPull, Repository: t.cacheKey(), Registry: t.host, Digest: d,
		MediaType: mediaType, Size: size}, name, what, d.String())
}
