package notify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
)

// MediaType is the Content-Type of every delivery: distribution's, so that
// its receivers accept the body.
const MediaType = "application/vnd.docker.distribution.events.v1+json"

// SignatureHeader carries "sha256=" and the hex HMAC-SHA256 of the body
// under the endpoint's secret.
const SignatureHeader = "X-Regmirror-Signature"

// The actions an event reports. Push, delete and pull are distribution's;
// the others are the mirror's own.
const (
	// ActionPush: a manifest was pushed to a hosted repository. Blob
	// uploads send none: the manifest's event names the image.
	ActionPush = "push"
	// ActionDelete: a hosted manifest or tag was deleted.
	ActionDelete = "delete"
	// ActionPull: a cold pull, a cache miss filled from the upstream
	// (a manifest, or a blob once its download has been verified).
	// Cache hits send none.
	ActionPull = "pull"
	// ActionEvict: automatic eviction removed a manifest or blob.
	ActionEvict = "evict"
	// ActionPrefetchFailure: an image of a prefetch list could not be
	// fetched.
	ActionPrefetchFailure = "prefetch_failure"
	// ActionBreakerOpen and ActionBreakerClosed: an upstream's circuit
	// breaker opened (the upstream is skipped after repeated failures) or
	// closed again (it answers).
	ActionBreakerOpen   = "breaker_open"
	ActionBreakerClosed = "breaker_closed"
)

// Actions lists every action, for validating endpoint filters.
var Actions = []string{ActionPush, ActionDelete, ActionPull, ActionEvict,
	ActionPrefetchFailure, ActionBreakerOpen, ActionBreakerClosed}

// Envelope is the body of a delivery.
type Envelope struct {
	Events []Event `json:"events"`
}

// Event is one thing that happened, in distribution's event shape. It
// never holds credentials: Request.Addr is the client's address, Actor the
// name a client logged in with.
type Event struct {
	// ID is unique per event; Notify sets it and Timestamp, and Source.
	ID        string    `json:"id"`
	Timestamp time.Time `json:"timestamp"`
	Action    string    `json:"action"`
	Target    Target    `json:"target"`
	Request   Request   `json:"request,omitzero"`
	Actor     Actor     `json:"actor,omitzero"`
	Source    Source    `json:"source"`
	// Reason says what went wrong, on prefetch_failure events. Not part
	// of distribution's shape; its receivers ignore it.
	Reason string `json:"reason,omitempty"`
}

// Target is what an event is about.
type Target struct {
	MediaType string        `json:"mediaType,omitempty"`
	Digest    digest.Digest `json:"digest,omitempty"`
	Size      int64         `json:"size,omitempty"`
	// Repository is a hosted repository's name ("team/app") or a cached
	// one's with its registry ("docker.io/library/node").
	Repository string `json:"repository,omitempty"`
	URL        string `json:"url,omitempty"`
	Tag        string `json:"tag,omitempty"`
	// Registry is the upstream registry's host on pull, prefetch_failure
	// and breaker events: an addition to distribution's shape.
	Registry string `json:"registry,omitempty"`
}

// Request is the client request that caused an event.
type Request struct {
	ID        string `json:"id,omitempty"`
	Addr      string `json:"addr,omitempty"`
	Host      string `json:"host,omitempty"`
	Method    string `json:"method,omitempty"`
	UserAgent string `json:"useragent,omitempty"`
}

// Actor is who caused an event: the user a client logged in as.
type Actor struct {
	Name string `json:"name,omitempty"`
}

// Source is the mirror that sent an event.
type Source struct {
	Addr       string `json:"addr,omitempty"`
	InstanceID string `json:"instanceID,omitempty"`
}

// Sign returns the SignatureHeader value of body under secret.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// Verify reports whether header is body's signature under secret, in
// constant time: what a receiver written in Go calls.
func Verify(secret, body []byte, header string) bool {
	got, ok := strings.CutPrefix(header, "sha256=")
	if !ok {
		return false
	}
	sum, err := hex.DecodeString(got)
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return hmac.Equal(sum, mac.Sum(nil))
}
