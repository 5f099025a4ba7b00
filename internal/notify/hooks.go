package notify

import "github.com/opencontainers/go-digest"

// Event makers for the callers outside the mirror's request path. Each is
// a no-op on a nil *Notifier and never blocks.

// PrefetchFailed reports that reference (a tag or a digest) of repository
// on registry could not be prefetched, because of err. err's text goes
// into the event: it must not hold secrets, which upstream errors never do.
// A prefetcher takes it as a
//
//	interface{ PrefetchFailed(registry, repository, reference string, err error) }
func (n *Notifier) PrefetchFailed(registry, repository, reference string, err error) {
	t := Target{Registry: registry, Repository: repository}
	if d, perr := digest.Parse(reference); perr == nil {
		t.Digest = d
	} else {
		t.Tag = reference
	}
	e := Event{Action: ActionPrefetchFailure, Target: t}
	if err != nil {
		e.Reason = err.Error()
	}
	n.Notify(e)
}

// BreakerChanged reports that the circuit breaker of the upstream registry
// opened (open) or closed again; half-open probes are not reported.
func (n *Notifier) BreakerChanged(registry string, open bool) {
	action := ActionBreakerClosed
	if open {
		action = ActionBreakerOpen
	}
	n.Notify(Event{Action: action, Target: Target{Registry: registry}})
}

// Evicted reports that automatic eviction removed d, a manifest or a blob
// of size bytes (0: unknown). The cache is content-addressed: the event
// names no repository.
func (n *Notifier) Evicted(d digest.Digest, manifest bool, size int64) {
	mediaType := "application/octet-stream"
	if manifest {
		mediaType = "" // the index keeps no media type for it
	}
	n.Notify(Event{Action: ActionEvict, Target: Target{Digest: d, Size: size, MediaType: mediaType}})
}
