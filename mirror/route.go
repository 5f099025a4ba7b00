package mirror

import (
	"strings"

	"github.com/distribution/reference"
)

// dockerHub is the registry that dockerd's registry-mirrors setting mirrors.
const dockerHub = "docker.io"

// hostAliases maps the names Docker Hub is known by to the one the mirror uses.
var hostAliases = map[string]string{
	"index.docker.io":         dockerHub,
	"registry-1.docker.io":    dockerHub,
	"registry.hub.docker.com": dockerHub,
}

// canonicalHost folds aliases and case, so "ns=registry-1.docker.io" and
// "ns=docker.io" address the same upstream.
func canonicalHost(host string) string {
	host = strings.ToLower(host)
	if alias, ok := hostAliases[host]; ok {
		return alias
	}
	return host
}

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
		return target{}, newError(codeNameInvalid, "invalid repository name %q", truncate(name))
	}
	return t, nil
}

func looksLikeHost(component string) bool {
	return component == "localhost" || strings.ContainsAny(component, ".:")
}
