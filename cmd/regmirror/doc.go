// Command regmirror is a pull-through container-registry mirror: `regmirror
// serve` runs the daemon, `regmirror config check` validates its
// configuration without starting anything, `regmirror cache stats|prune|verify` inspect and
// trim its cache (through the running daemon's admin socket, or directly
// when it is stopped), `regmirror htpasswd` makes users for hosted
// repositories. This package is wiring only: flags, environment and the
// YAML config become plain structs that the mirror, cache, upstream,
// credentials and eviction packages are built from; the cache operations
// and the admin socket are internal/admin's, the status and browse pages
// internal/statuspage's.
package main
