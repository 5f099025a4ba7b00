package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// configCase is a config file and what loading, defaulting and validating
// it must give: a config that check accepts, or an error containing wantErr.
type configCase struct {
	name    string
	yaml    string
	check   func(t *testing.T, c Config)
	wantErr string
}

func runConfigCases(t *testing.T, tests []configCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := loadConfig(writeConfig(t, tt.yaml))
			if err == nil {
				cfg = cfg.withDefaults()
				err = cfg.validate()
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, cfg)
		})
	}
}

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	runConfigCases(t, []configCase{
		{
			name: "empty file means defaults",
			yaml: "",
			check: func(t *testing.T, c Config) {
				if c.Listen != ":5000" || c.DataDir != "./data" || len(c.Upstreams) != 1 ||
					c.Upstreams[0].Host != "docker.io" || c.Upstreams[0].URL != "https://registry-1.docker.io" {
					t.Fatalf("defaults = %+v", c)
				}
			},
		},
		{
			name: "issue example",
			yaml: "upstreams:\n  - host: docker.io\n    url: https://registry-1.docker.io\n    username: mirror-bot\n    password: s3cret\n    tag_ttl: 2m\n",
			check: func(t *testing.T, c Config) {
				u := c.Upstreams[0]
				if u.Username != "mirror-bot" || u.Password != "s3cret" || u.TagTTL != 2*time.Minute {
					t.Fatalf("upstream = %+v", u)
				}
			},
		},
		{
			name: "docker.io without url gets the registry endpoint",
			yaml: "upstreams:\n  - host: docker.io\n",
			check: func(t *testing.T, c Config) {
				if c.Upstreams[0].URL != "https://registry-1.docker.io" {
					t.Fatalf("url = %q", c.Upstreams[0].URL)
				}
			},
		},
		{name: "unknown field", yaml: "listn: :5000\n", wantErr: "field listn not found"},
		{name: "bad url", yaml: "upstreams:\n  - host: x.io\n    url: ftp://x.io\n", wantErr: "must be an http:// or https:// URL"},
		{name: "password without user", yaml: "upstreams:\n  - host: x.io\n    password: p\n", wantErr: "needs a username"},
		{name: "duplicate host", yaml: "upstreams:\n  - host: x.io\n  - host: x.io\n", wantErr: "listed twice"},
		{name: "half a TLS pair", yaml: "tls_cert: c.pem\n", wantErr: "must be set together"},
	})
}

// Secrets in the config never show up in validation errors.
func TestConfigErrorsDoNotLeakPasswords(t *testing.T) {
	t.Parallel()
	cfg, err := loadConfig(writeConfig(t, "upstreams:\n  - host: x.io\n    url: nope\n    password: hunter2-secret\n"))
	if err != nil {
		t.Fatal(err)
	}
	err = cfg.withDefaults().validate()
	if err == nil || strings.Contains(err.Error(), "hunter2-secret") {
		t.Fatalf("validate() = %v: want an error without the password", err)
	}
}
