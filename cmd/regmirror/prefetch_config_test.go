package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseImageRef(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
		pattern  bool
		wantErr  bool
	}{
		{in: "node:20", want: "docker.io/library/node:20"},
		{in: "docker.io/library/node", want: "docker.io/library/node:latest"},
		{in: "quay.io/calico/node:v3.26.4", want: "quay.io/calico/node:v3.26.4"},
		{in: "registry.k8s.io/kube-apiserver:v1.31.*", want: "registry.k8s.io/kube-apiserver:v1.31.*", pattern: true},
		{in: "localhost:5000/team/app:1", want: "localhost:5000/team/app:1"},
		{in: "registry.k8s.io/pause:3.9@sha256:" + strings.Repeat("a", 64), want: "registry.k8s.io/pause@sha256:" + strings.Repeat("a", 64)},
		{in: "Node:20", wantErr: true},
		{in: "node:", wantErr: true},
		{in: "node@sha256:abc", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			r, err := parseImageRef(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseImageRef(%q) error %v, want error %v", tt.in, err, tt.wantErr)
			}
			if err == nil && (r.String() != tt.want || r.isPattern() != tt.pattern) {
				t.Fatalf("parseImageRef(%q) = %s (pattern %v), want %s (pattern %v)", tt.in, r, r.isPattern(), tt.want, tt.pattern)
			}
		})
	}
}

func TestReadImageList(t *testing.T) {
	t.Parallel()
	images, err := readImageList("# kubespray images.list\nregistry.k8s.io/pause:3.9\n\n  quay.io/calico/node:v3.26.4  # cni\n")
	if err != nil || len(images) != 2 || images[0].Image != "registry.k8s.io/pause:3.9" || images[1].Image != "quay.io/calico/node:v3.26.4" {
		t.Fatalf("readImageList = %+v, %v", images, err)
	}
	if _, err := readImageList("node:20\nNot A Ref\n"); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("a bad line: error %v, want one naming line 2", err)
	}
}

// Pins and prefetch entries are plain strings or mappings with platforms,
// and the listed images are pinned.
func TestPinsAndPrefetchConfig(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "config.yaml")
	yaml := `cache:
  pin:
    - "library/node:20*"
    - ref: "ghcr.io/team/**"
      platforms: [linux/amd64]
prefetch:
  interval: 1h
  images:
    - registry.k8s.io/kube-apiserver:v1.31.*
    - image: docker.io/library/python:3.12
      platforms: [linux/arm64/v8]
`
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	pins, err := cfg.pins()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range pins {
		got = append(got, p.String())
	}
	want := "library/node:20* | ghcr.io/team/** (linux/amd64) | registry.k8s.io/kube-apiserver:v1.31.* | docker.io/library/python:3.12 (linux/arm64/v8)"
	if strings.Join(got, " | ") != want || cfg.Prefetch.interval().String() != "1h0m0s" {
		t.Fatalf("pins = %s, interval %s; want %s, 1h", strings.Join(got, " | "), cfg.Prefetch.interval(), want)
	}
	if err := (PrefetchConfig{Images: []PrefetchImage{{Image: "node:20", Platforms: []string{"amd64"}}}}).validate(); err == nil {
		t.Error("a platform without an OS was accepted")
	}
}
