package registryhost

import "testing"

func TestCanonical(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, host, want, hostname string }{
		{"plain", "ghcr.io", "ghcr.io", "ghcr.io"},
		{"case", "GHCR.IO", "ghcr.io", "ghcr.io"},
		{"trailing dot", "ghcr.io.", "ghcr.io", "ghcr.io"},
		{"https port", "ghcr.io:443", "ghcr.io", "ghcr.io"},
		{"http port", "ghcr.io:80", "ghcr.io", "ghcr.io"},
		{"trailing dot and port", "ghcr.io.:443", "ghcr.io", "ghcr.io"},
		{"other port stays", "ghcr.io:8443", "ghcr.io:8443", "ghcr.io"},
		{"hub alias", "registry-1.docker.io", "docker.io", "docker.io"},
		{"hub alias with port and case", "Registry-1.Docker.IO.:443", "docker.io", "docker.io"},
		{"hub alias on another port", "index.docker.io:5000", "docker.io:5000", "docker.io"},
		{"hub web name", "registry.hub.docker.com", "docker.io", "docker.io"},
		{"look-alike is not an alias", "registry-gitlab.com", "registry-gitlab.com", "registry-gitlab.com"},
		{"loopback with port", "127.0.0.1:5000", "127.0.0.1:5000", "127.0.0.1"},
		{"ipv6 with port", "[::1]:5000", "[::1]:5000", "::1"},
		{"ipv6 default port", "[::1]:443", "[::1]", "::1"},
		{"trailing slash", "docker.io/", "docker.io", "docker.io"},
		{"empty", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := Canonical(tt.host); got != tt.want {
				t.Errorf("Canonical(%q) = %q, want %q", tt.host, got, tt.want)
			}
			if got := Hostname(tt.host); got != tt.hostname {
				t.Errorf("Hostname(%q) = %q, want %q", tt.host, got, tt.hostname)
			}
			if got := Canonical(Canonical(tt.host)); got != tt.want {
				t.Errorf("Canonical is not idempotent on %q: %q", tt.host, got)
			}
		})
	}
}
