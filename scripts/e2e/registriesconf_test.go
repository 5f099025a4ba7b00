package e2e

import (
	"os"
	"strings"
	"testing"
)

func TestRenderRegistriesConf(t *testing.T) {
	t.Parallel()
	const mirror = "127.0.0.1:41234"
	tests := []struct {
		name, template, want, wantErr string
	}{
		{
			name:     "mirror locations replaced, registry prefixes kept",
			template: "[[registry]]\nprefix = \"docker.io\"\nlocation = \"docker.io\"\n\n[[registry.mirror]]\nlocation = \"127.0.0.1:5000/docker.io\"\ninsecure = true  # plain HTTP\n",
			want:     "[[registry]]\nprefix = \"docker.io\"\nlocation = \"docker.io\"\n\n[[registry.mirror]]\nlocation = \"127.0.0.1:41234/docker.io\"\ninsecure = true  # plain HTTP\n",
		},
		{
			name:     "no mirror refused",
			template: "[[registry]]\nprefix = \"docker.io\"\nlocation = \"docker.io\"\n",
			wantErr:  "no [[registry.mirror]]",
		},
		{
			name:     "mirror elsewhere refused",
			template: "[[registry.mirror]]\nlocation = \"mirror.example:5000/docker.io\"\ninsecure = true\n",
			wantErr:  "location",
		},
		{
			name:     "TLS mirror refused",
			template: "[[registry.mirror]]\nlocation = \"127.0.0.1:5000/docker.io\"\n",
			wantErr:  "insecure",
		},
	}
	for _, tt := range tests {
		got, err := renderRegistriesConf(tt.template, mirror)
		switch {
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s: err = %v, want one containing %q", tt.name, err, tt.wantErr)
		case tt.wantErr == "" && (err != nil || got != tt.want):
			t.Errorf("%s: got %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
}

// The documented registries.conf is a valid template, so the e2e test can
// use it as it is.
func TestDocumentedRegistriesConf(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(WriteRegistriesConf(t, "http://127.0.0.1:41234"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`location = "127.0.0.1:41234/docker.io"`, `location = "127.0.0.1:41234/ghcr.io"`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("rendered registries.conf lacks %s:\n%s", want, data)
		}
	}
}
