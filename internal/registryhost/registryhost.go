// Package registryhost is the one table of registry host names for the
// whole project. Clients and operators write the same registry in many
// ways ("Registry-1.Docker.IO:443", "ghcr.io.", "index.docker.io"); routing,
// allow and deny lists, and credentials must all see one name for it, or a
// client could reach a configured registry under an alias that escapes its
// settings, or have the mirror's credentials sent to a look-alike.
package registryhost

import (
	"net"
	"strings"
)

// DockerHub is the name the project uses for Docker Hub.
const DockerHub = "docker.io"

// aliases maps the other names of a registry to its canonical one.
var aliases = map[string]string{
	"index.docker.io":         DockerHub,
	"registry-1.docker.io":    DockerHub,
	"registry.hub.docker.com": DockerHub,
}

// defaultPorts are the ports a registry host means without one: the
// mirror reaches registries nobody configured over HTTPS, and a port that
// only repeats the scheme's default names no other registry.
var defaultPorts = map[string]bool{"443": true, "80": true}

// Canonical is the one name of the registry host[:port] names: lower case,
// without trailing dots, without a default port, aliases folded
// ("Registry-1.Docker.IO.:443" → "docker.io"). A non-default port stays
// ("registry.example.com:5000"): it may be another service.
func Canonical(host string) string {
	name, port := split(strings.ToLower(strings.TrimSuffix(host, "/")))
	name = strings.TrimRight(name, ".")
	if alias, ok := aliases[name]; ok {
		name = alias
	}
	if port == "" || defaultPorts[port] {
		if strings.Contains(name, ":") {
			return "[" + name + "]" // an IPv6 literal needs its brackets back
		}
		return name
	}
	return net.JoinHostPort(name, port)
}

// Hostname is the canonical name of host without its port: two hosts with
// the same Hostname are the same machine, whatever their ports.
func Hostname(host string) string {
	name, _ := split(Canonical(host))
	return name
}

// split separates host[:port]; an IPv6 literal loses its brackets.
func split(host string) (name, port string) {
	if h, p, err := net.SplitHostPort(host); err == nil {
		return h, p
	}
	return strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"), ""
}
