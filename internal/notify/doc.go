// Package notify delivers webhooks: JSON events about what the mirror does
// (pushes, deletes, cold pulls, evictions, prefetch failures, upstream
// breaker changes) POSTed to the configured endpoints in the envelope of
// distribution's notifications, so that receivers written for
// distribution (or Harbor's, which reads the same shape) work unchanged.
// Each body is signed with HMAC-SHA256 when the endpoint has a secret.
//
// Delivery never holds up the caller: Notify puts the event on each
// endpoint's bounded queue, or drops and counts it when the queue is full,
// and one goroutine per endpoint sends what is queued, retrying with
// exponential backoff. An endpoint that is down for long therefore loses
// events rather than the mirror buffering them without bound.
package notify
