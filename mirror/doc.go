// Package mirror serves the OCI distribution API (the Docker Registry V2 API)
// as a pull-through mirror with optional hosted repositories at the same URL.
// Every request is parsed once by a pure function, routed to an upstream
// registry (containerd's ns parameter, a host prefix in the name, or the
// default registry, Docker Hub), and answered from a content-addressed cache
// that fills itself from the upstream on a miss.
//
// Pulls are anonymous and never challenged: a docker daemon that gets any
// error from a mirror silently pulls from Docker Hub instead, and then
// nothing is cached. Pushes go only to hosted repositories and need a login;
// a pull of a hosted name finds hosted content first, then the upstream.
// Errors are answered in the OCI format {"errors":[{"code":...,"message":...}]}
// from one code-to-status table.
//
// The package defines the small interfaces it consumes (Cache, Upstream,
// Hosted, Visibility, Authenticator, Directory); it imports no other package
// of regmirror.
package mirror
