// Package registrytest runs a real, in-process upstream registry that behaves
// like Docker Hub, for integration tests, the end-to-end test and benchmarks.
//
// The registry protocol is go-containerregistry's pkg/registry handler; this
// package puts Docker-Hub-style Bearer token auth in front of it on a loopback
// listener (a /token realm on the same host, per-repository pull scopes,
// expiring tokens, private repositories that need credentials), counts every
// request so tests can prove cache hits and coalescing, builds deterministic
// multi-arch images whose layers a real dockerd can extract, and injects
// faults: corrupt, truncated or stalled bodies, throttled bandwidth, 5xx
// answers, and blob redirects to a second "CDN" listener that records the
// headers it receives.
//
// Nothing here depends on *testing.T except the New convenience, so the same
// registry serves benchmarks and command-line tools.
package registrytest
