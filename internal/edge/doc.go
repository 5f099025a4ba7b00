// Package edge guards the daemon's network edge, before any request reaches
// the registry: a listener that caps the connections open per client and in
// total, and an HTTP handler that answers non-canonical paths with an OCI
// error instead of a redirect, refuses bodies on requests that take none,
// cuts off request bodies that stall, and trusts X-Forwarded-* headers only
// from the reverse proxies the operator listed.
package edge
