package mirror

import (
	"strings"

	"github.com/distribution/reference"

	"github.com/regmirror/regmirror/internal/ociserver"
	"github.com/regmirror/regmirror/internal/registryhost"
)

// dockerHub is the registry that dockerd's registry-mirrors setting mirrors.
const dockerHub = registryhost.DockerHub

// canonicalHost folds aliases, case, trailing dots and default ports, so
// "ns=registry-1.docker.io:443" and "ns=docker.io" address the same
// upstream, with the same allow and deny lists.
func canonicalHost(host string) string { return registryhost.Canonical(host) }

// target is where a request goes: a registry and a repository on it.
type target struct {
	host string
	// path is the repository on host, e.g. "library/node".
	path string
}

// cacheKey names the repository in the cache, host included, so that
// same-named repositories of different registries never mix.
func (t target) cacheKey() string { return t.host + "/" + t.path }

// resolveTarget decides which registry a repository name addresses, in
// this order: containerd's ns parameter, a path prefix that looks like a
// host ("ghcr.io/org/app"), else the default registry. Docker Hub's official
// images live under "library/", which clients may leave out.
func resolveTarget(name, ns, defaultHost string) (target, error) {
	var t target
	switch first, rest, hasRest := strings.Cut(name, "/"); {
	case ns != "":
		t = target{host: canonicalHost(ns), path: name}
	case hasRest && looksLikeHost(first):
		t = target{host: canonicalHost(first), path: rest}
	default:
		t = target{host: defaultHost, path: name}
	}
	if t.host == dockerHub && !strings.Contains(t.path, "/") {
		t.path = "library/" + t.path
	}
	named, err := reference.WithName(t.host + "/" + t.path)
	if err != nil || reference.Domain(named) != t.host || reference.Path(named) != t.path {
		return target{}, newError(ociserver.CodeNameInvalid, "invalid repository name %q", truncate(name))
	}
	return t, nil
}

func looksLikeHost(component string) bool {
	return component == "localhost" || strings.ContainsAny(component, ".:")
}
