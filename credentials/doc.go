// Package credentials decides which secret regmirror presents to an
// upstream registry. One lookup by registry host consults, in order: static
// credentials from the config file (a password or a password file), the
// docker config.json with its credential helpers, and the environment
// variables REGMIRROR_UPSTREAM_<HOSTKEY>_USERNAME and _PASSWORD; when none
// has an entry the registry is used anonymously.
//
// Credentials are released only for the exact hosts the operator
// configured (Config.Static and Config.Hosts, after folding aliases, case,
// trailing dots and default ports with internal/registryhost); any other
// host, such as one a client named, is anonymous whatever the sources
// hold. Environment variable names that two configured hosts share are
// refused at startup.
//
// The result is a go-containerregistry authn.Keychain, so the upstream
// client can hand it to ggcr's transport. Docker Hub's many names
// (docker.io, index.docker.io, registry-1.docker.io) are one host here.
// Secrets never appear in errors, String, fmt or slog output.
package credentials
