// Package upstream is regmirror's client for remote registries such as
// Docker Hub. A Client speaks to one registry: it resolves tags with HEAD
// (which does not count against Docker Hub's pull limit), downloads
// manifests under a size cap and verifies their digest, opens blob
// downloads that follow CDN redirects without forwarding credentials, and
// lists tags across pages.
//
// Authentication is go-containerregistry's transport: Docker-Hub-style
// bearer tokens, one authenticated transport per repository, created once
// (concurrent first uses share the handshake) and reused so a token is
// requested once per repository scope and lifetime. Only the 1024
// repositories used last keep theirs: clients choose repository names. Failures come back as
// one typed *Error that keeps the registry's status and error code and says
// whether retrying may help; the client itself retries temporary failures
// of its idempotent requests a bounded number of times.
//
// A Client fails fast when its upstream is in trouble: connecting and
// waiting for response headers have short timeouts, every metadata
// operation (handshake and retries included) has a total deadline, a
// circuit breaker skips the upstream for a cool-down after repeated
// failures, and a 429 pauses all requests to it until its Retry-After.
// Skipped operations fail at once with ErrCircuitOpen or ErrRateLimited.
//
// Every hop of every request is held to an address policy in the default
// transport's dialer, after DNS: the hosts the operator configured (the
// registry's, its token services, Config.RedirectHosts) are dialed where
// they resolve; any other host a registry sends the client to (a blob
// redirect, a token realm) only at public addresses (PublicAddress), and
// with Config.PublicOnly, for a registry a client named, the registry's
// own host too. Credentials go only to the registry's host and its token
// services (credentialGuard).
//
// Per registry, TLSConfig adds CAs to the system's roots, presents a
// client certificate (reloaded when its files change) to the configured
// hosts only, or skips verification of them; Config.Proxy sends all of
// its traffic through one proxy, the address policy still applied first.
// A TLS failure comes back as a *CertificateError naming the setting
// that fixes it.
package upstream
