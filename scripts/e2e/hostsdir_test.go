package e2e

import (
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRenderHostsTOML(t *testing.T) {
	t.Parallel()
	mirror := &url.URL{Scheme: "http", Host: "127.0.0.1:41234"}
	tests := []struct {
		name, template, want, wantErr string
	}{
		{
			name:     "mirror entry replaced",
			template: "# c\n[host.\"http://127.0.0.1:5000\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
			want:     "# c\n[host.\"http://127.0.0.1:41234\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
		},
		{
			name:     "server line refused",
			template: "server = \"https://registry-1.docker.io\"\n[host.\"http://m:5000\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
			wantErr:  "server line",
		},
		{
			name:     "two hosts refused",
			template: "[host.\"http://a:5000\"]\n  capabilities = [\"pull\", \"resolve\"]\n[host.\"http://b:5000\"]\n",
			wantErr:  "exactly one",
		},
		{
			name:     "pull only refused",
			template: "[host.\"http://a:5000\"]\n  capabilities = [\"pull\"]\n",
			wantErr:  "resolve",
		},
	}
	for _, tt := range tests {
		got, err := renderHostsTOML(tt.template, mirror)
		switch {
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s: err = %v, want one containing %q", tt.name, err, tt.wantErr)
		case tt.wantErr == "" && (err != nil || got != tt.want):
			t.Errorf("%s: got %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
}

// The documented hosts.toml files are valid templates, so the e2e test can
// use them as they are.
func TestDocumentedHostsTOML(t *testing.T) {
	t.Parallel()
	dir := WriteHostsDir(t, "http://127.0.0.1:41234", "docker.io", "ghcr.io")
	for _, registry := range []string{"docker.io", "ghcr.io"} {
		data, err := os.ReadFile(filepath.Join(dir, registry, "hosts.toml"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), `[host."http://127.0.0.1:41234"]`) {
			t.Errorf("%s/hosts.toml:\n%s", registry, data)
		}
	}
}
