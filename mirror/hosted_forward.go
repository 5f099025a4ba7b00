package mirror

import (
	"context"
	"net/http"

	"github.com/regmirror/regmirror/internal/ociserver"
)

// HostedOwners are the replicas of a cluster as hosted repositories use
// them: each hosted repository has one owner, which alone keeps its
// content, and the other replicas pass its clients' requests on to it.
type HostedOwners interface {
	// Owner returns the replica that owns key, here "hosted:<name>", and
	// whether that is this one. Every replica with the same members
	// answers the same.
	Owner(key string) (peer string, self bool)
	// ServeHosted passes r to peer, the owner, with the client's headers
	// and body as they are, and copies the owner's answer to w, both
	// streaming, but for the headers w has already. The owner serves it as it would the client, checking
	// the client's credentials itself. An error means nothing was written
	// to w: the owner could not be reached or did not answer in time.
	ServeHosted(w http.ResponseWriter, r *http.Request, peer string) error
}

// hostedPeerKey marks the context of a hosted forward.
type hostedPeerKey struct{}

// WithHostedPeer marks ctx as a client's request for a hosted repository
// that another replica passed on here, which the caller has verified (a
// valid peer signature). It grants nothing: the mirror serves it with the
// client's own credentials, and serves it here, never passing it on
// again, so that replicas that disagree on the members cannot bounce it
// between them.
func WithHostedPeer(ctx context.Context) context.Context {
	return context.WithValue(ctx, hostedPeerKey{}, true)
}

// fromHostedPeer reports whether ctx is a request marked by WithHostedPeer.
func fromHostedPeer(ctx context.Context) bool {
	v, _ := ctx.Value(hostedPeerKey{}).(bool)
	return v
}

// hostedOwnerKey names a hosted repository for ownership.
func hostedOwnerKey(name string) string { return "hosted:" + name }

// forwardHosted passes a request for a hosted repository that another
// replica owns to that replica, and reports whether it did. The request
// is the whole of it, tags and referrers of names that fall through
// included: the owner answers with the hosted content and the upstream's
// as the group does here, so a forwarded request is answered as if this
// replica held the repository. When the owner does not answer, the client
// gets 503: this replica's own copy of the repository, if any, is stale,
// and serving it, or taking a push into it, would split the repository.
func (m *Mirror) forwardHosted(w http.ResponseWriter, r *http.Request) (bool, error) {
	req, name, ok := m.hostedRequestOf(r)
	if !ok {
		return false, nil
	}
	peer, self := m.hostedOwners.Owner(hostedOwnerKey(name))
	if self {
		return false, nil
	}
	noteKind(r.Context(), req.Kind)
	noteRepository(r.Context(), name)
	err := m.hostedOwners.ServeHosted(w, r, peer)
	if err == nil {
		return true, nil
	}
	if r.Context().Err() != nil {
		// The client hung up, or its body stalled and the edge gave up on
		// it: it must see a cut connection, never the implicit 200 of a
		// handler that wrote nothing.
		noteError(r.Context(), err)
		panic(http.ErrAbortHandler)
	}
	m.metrics.hostedForwardFailures.Inc()
	m.log.WarnContext(r.Context(), "owner replica of a hosted repository did not answer",
		"peer", peer, "repository", name, "method", r.Method, "error", err)
	return true, &Error{Code: ociserver.CodeUnavailable, Err: err,
		Message: "the replica that holds this hosted repository is unavailable; retry"}
}

// hostedRequestOf parses r and returns the hosted name it is for, when it
// is a request of the registry API for a hosted repository that may be
// passed to its owner: in a cluster, from a client (a peer's request is
// served here). The name is resolved as the group routes it (group.route).
func (m *Mirror) hostedRequestOf(r *http.Request) (request, string, bool) {
	if m.hosted == nil || m.hostedOwners == nil || fromHostedPeer(r.Context()) || fromTrustedPeer(r.Context()) {
		return request{}, "", false
	}
	req, err := ociserver.ParseRequest(r.URL)
	if err != nil || req.Name == "" {
		return request{}, "", false // the catalog, the ping, or answered as invalid here
	}
	name, err := resolveHostedName(req.Name, req.NS, m.defaultHost)
	if err != nil || !m.hosted.isHostedName(name) {
		return request{}, "", false
	}
	return req, name, true
}
