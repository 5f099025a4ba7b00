// Package mirror is the registry behind regmirror's OCI distribution API: a
// pull-through mirror with optional hosted repositories at the same URL.
// The protocol itself (parsing, dispatch, blob and Range responses, the
// upload protocol, errors) is internal/ociserver's; this package composes
// the backend it answers from:
//
//   - proxy reads proxied repositories: routed to an upstream registry
//     (containerd's ns parameter, a host prefix in the name, or the default
//     registry, Docker Hub) and answered from a content-addressed cache that
//     fills itself from the upstream on a miss;
//   - hostedBackend reads and writes hosted repositories;
//   - group serves hosted names from the one and the rest from the other;
//   - authorizer and readOnly are the policies around them.
//
// Pulls are anonymous and never challenged: a docker daemon that gets any
// error from a mirror silently pulls from Docker Hub instead, and then
// nothing is cached. Pushes go only to hosted repositories and need a login;
// a pull of a hosted name finds hosted content first, then the upstream
// where the name falls through.
//
// The package defines the small interfaces it consumes (Cache, Upstream,
// Hosted, Visibility, Authenticator, Directory); it imports no other package
// of regmirror but the protocol server and small internal helpers.
package mirror
