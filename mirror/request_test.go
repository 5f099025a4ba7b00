package mirror

import (
	"testing"

	"github.com/opencontainers/go-digest"
)

const testDigest = digest.Digest("sha256:aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f")

var testDigest512 = digest.SHA512.FromString("test")

func TestResolveTarget(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, repo, ns string
		want           target
		invalid        bool
	}{
		{name: "official image", repo: "node", want: target{host: "docker.io", path: "library/node"}},
		{name: "official image with library", repo: "library/node", want: target{host: "docker.io", path: "library/node"}},
		{name: "user image", repo: "grafana/grafana", want: target{host: "docker.io", path: "grafana/grafana"}},
		{name: "host prefix", repo: "ghcr.io/org/app", want: target{host: "ghcr.io", path: "org/app"}},
		{name: "host with port", repo: "registry.local:5000/app", want: target{host: "registry.local:5000", path: "app"}},
		{name: "ns wins", repo: "org/app", ns: "ghcr.io", want: target{host: "ghcr.io", path: "org/app"}},
		{name: "ns docker alias", repo: "node", ns: "registry-1.docker.io", want: target{host: "docker.io", path: "library/node"}},
		{name: "ns upper case folds", repo: "library/node", ns: "Docker.IO", want: target{host: "docker.io", path: "library/node"}},
		{name: "ns with slash", repo: "node", ns: "evil.com/x", invalid: true},
		{name: "ns with spaces", repo: "node", ns: "a b", invalid: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := resolveTarget(tt.repo, tt.ns, "docker.io")
			if tt.invalid {
				if err == nil {
					t.Fatalf("resolveTarget(%q, %q) = %+v, want an error", tt.repo, tt.ns, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("resolveTarget(%q, %q) = %+v, %v; want %+v", tt.repo, tt.ns, got, err, tt.want)
			}
		})
	}
}
