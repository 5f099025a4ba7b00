package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/eviction"
)

func TestCacheConfigParsing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		yaml    string
		want    CacheConfig
		wantErr string
	}{
		{name: "binary units and percentages",
			yaml: "cache:\n  max_size: 50GiB\n  high_watermark: 95%\n  low_watermark: 70%\n  min_free_disk: 2GB\n  pin: [library/*]\n",
			want: CacheConfig{MaxSize: 50 << 30, HighWatermark: 0.95, LowWatermark: 0.70, MinFreeDisk: ptr(Size(2_000_000_000)), Pin: []PinConfig{{Ref: "library/*"}}}},
		{name: "plain bytes and fractions",
			yaml: "cache:\n  max_size: 1048576\n  high_watermark: 0.5\n  low_watermark: 0.25\n",
			want: CacheConfig{MaxSize: 1 << 20, HighWatermark: 0.5, LowWatermark: 0.25}},
		{name: "unreadable size", yaml: "cache:\n  max_size: fifty gigs\n", wantErr: "fifty gigs"},
		{name: "low above high", yaml: "cache:\n  high_watermark: 50%\n  low_watermark: 60%\n", wantErr: "watermarks"},
		{name: "bad pin", yaml: "cache:\n  pin: ['team/[']\n", wantErr: "cache.pin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "regmirror.yaml")
			if err := os.WriteFile(path, []byte(tt.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg, err := loadConfig(path)
			if err == nil {
				err = cfg.withDefaults().validate()
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := cfg.Cache
			if got.MaxSize != tt.want.MaxSize || got.HighWatermark != tt.want.HighWatermark ||
				got.LowWatermark != tt.want.LowWatermark || fmt.Sprint(got.Pin) != fmt.Sprint(tt.want.Pin) ||
				(got.MinFreeDisk == nil) != (tt.want.MinFreeDisk == nil) || (got.MinFreeDisk != nil && *got.MinFreeDisk != *tt.want.MinFreeDisk) {
				t.Errorf("cache = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestCacheConfigDefaults(t *testing.T) {
	t.Parallel()
	ev := CacheConfig{}.eviction()
	if ev.MaxSize != 0 || ev.HighWatermark != 0.9 || ev.LowWatermark != 0.8 || ev.MinFreeDisk != 1<<30 {
		t.Errorf("defaults = %+v; want no budget, 90%%/80%%, 1 GiB free disk", ev)
	}
	if off := (CacheConfig{MinFreeDisk: ptr(Size(0))}).eviction(); off.MinFreeDisk != 0 {
		t.Errorf("min_free_disk: 0 gives %d, want the floor off", off.MinFreeDisk)
	}
}

func ptr[T any](v T) *T { return &v }

// cache.pin speaks the one glob dialect: `**` crosses `/`, so
// "myorg/**" pins images any number of levels below myorg; a pattern that
// does not parse is a problem at its line.
func TestCachePinGlobCrossesSlash(t *testing.T) {
	t.Parallel()
	cfg, err := loadConfig(writeConfig(t, "cache:\n  pin: [\"myorg/**\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	pins, err := cfg.pins()
	if err != nil {
		t.Fatal(err)
	}
	inv := eviction.Inventory{Manifests: []eviction.Manifest{
		{Digest: digest.FromString("nested"), Repos: []string{"docker.io/myorg/a/b"}},
		{Digest: digest.FromString("top"), Repos: []string{"docker.io/myorg/app"}},
		{Digest: digest.FromString("other"), Repos: []string{"docker.io/other/a/b"}},
	}}
	want := map[digest.Digest]bool{digest.FromString("nested"): true, digest.FromString("top"): true}
	for _, c := range eviction.Candidates(inv, pins) {
		if c.Pinned != want[c.Digest] {
			t.Errorf("%s: pinned %v, want %v", c.Digest, c.Pinned, want[c.Digest])
		}
	}

	path := writeConfig(t, "listen: :5000\ncache:\n  pin:\n    - myorg/**\n    - \"myorg/[\"\n")
	cfg, file, err := readConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	file.add(cfg.withDefaults().validate())
	if err := file.err(); err == nil || !strings.Contains(err.Error(), path+":5: ") {
		t.Errorf("err = %v, want the bad pattern at line 5", err)
	}
}
