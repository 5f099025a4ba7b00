package e2e

import (
	"encoding/json"
	"net/url"
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestRenderDaemonConfig(t *testing.T) {
	t.Parallel()
	flags := []string{"data-root", "debug"}
	private := map[string]any{"deprecated-key-path": "/tmp/x/key.json"}
	tests := []struct {
		name     string
		template string
		mirror   string
		want     map[string]any
		wantErr  string
	}{
		{
			name:     "substitutes port and adds private options",
			template: `{"registry-mirrors": ["http://127.0.0.1:5000"]}`,
			mirror:   "http://127.0.0.1:41234",
			want: map[string]any{
				"registry-mirrors":    []any{"http://127.0.0.1:41234"},
				"deprecated-key-path": "/tmp/x/key.json",
			},
		},
		{
			name:     "keeps template path and other options",
			template: `{"registry-mirrors": ["http://localhost:5000/hub"], "max-concurrent-downloads": 3}`,
			mirror:   "https://127.0.0.1:9/",
			want: map[string]any{
				"registry-mirrors":         []any{"https://127.0.0.1:9/hub"},
				"max-concurrent-downloads": json.Number("3"),
				"deprecated-key-path":      "/tmp/x/key.json",
			},
		},
		{
			name:     "option the harness passes as a flag",
			template: `{"registry-mirrors": ["http://127.0.0.1:5000"], "debug": false}`,
			mirror:   "http://127.0.0.1:1",
			wantErr:  `"debug", which the e2e harness passes as a flag`,
		},
		{
			name:     "no mirrors",
			template: `{}`,
			mirror:   "http://127.0.0.1:1",
			wantErr:  `no "registry-mirrors" list`,
		},
		{
			name:     "empty mirrors",
			template: `{"registry-mirrors": []}`,
			mirror:   "http://127.0.0.1:1",
			wantErr:  `no "registry-mirrors" list`,
		},
		{
			name:     "private option in template",
			template: `{"registry-mirrors": ["http://127.0.0.1:5000"], "deprecated-key-path": "/etc/docker/key.json"}`,
			mirror:   "http://127.0.0.1:1",
			wantErr:  "keeps private",
		},
		{
			name:     "mirror URL with a path",
			template: `{"registry-mirrors": ["http://127.0.0.1:5000"]}`,
			mirror:   "http://127.0.0.1:1/v2",
			wantErr:  "a path belongs in",
		},
		{
			name:     "mirror URL without http scheme",
			template: `{"registry-mirrors": ["http://127.0.0.1:5000"]}`,
			mirror:   "unix:///run/x.sock",
			wantErr:  "scheme must be http or https",
		},
		{
			name:     "not JSON",
			template: `registry-mirrors = 1`,
			mirror:   "http://127.0.0.1:1",
			wantErr:  "parse daemon config template",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mirror, err := url.Parse(tt.mirror)
			if err != nil {
				t.Fatal(err)
			}
			out, err := renderDaemonConfig([]byte(tt.template), mirror, flags, private)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("renderDaemonConfig() error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("renderDaemonConfig() error = %v", err)
			}
			got := decodeJSON(t, out)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("renderDaemonConfig() = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestCommittedDaemonTemplateRenders keeps daemon.json.example usable by
// the harness, without needing root or dockerd.
func TestCommittedDaemonTemplateRenders(t *testing.T) {
	t.Parallel()
	path, err := findDaemonTemplate()
	if err != nil {
		t.Fatal(err)
	}
	template, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	mirror := &url.URL{Scheme: "http", Host: "127.0.0.1:41234"}
	out, err := renderDaemonConfig(template, mirror, dockerdFlagOptions, map[string]any{"deprecated-key-path": "k"})
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if got := decodeJSON(t, out)[mirrorsKey]; !reflect.DeepEqual(got, []any{"http://127.0.0.1:41234"}) {
		t.Errorf("%s renders mirrors %v, want exactly the test mirror", path, got)
	}
}

func decodeJSON(t *testing.T, data []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
	return m
}
