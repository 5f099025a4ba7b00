// Package admin is the daemon's administration surface for the host's
// operator: the cache operations (stats, prune, evict, verify, ls) on a
// cache.Store, their reports and how they print, and the admin socket, a
// private unix socket in the data directory that carries them from the
// CLI to the running daemon as JSON lines (progress, then one result or
// one error). When no daemon runs, the CLI runs the same operations on a
// store it opened itself. It also adapts the store to the eviction loop
// (EvictionCache) and to the mirror's listings (Inventory).
package admin
