package repoglob

import "testing"

func TestMatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"library/*", "library/node", true},
		{"library/*", "library/a/b", false},
		{"team/**", "team", true},
		{"team/**", "team/app/api", true},
		{"**/node", "docker.io/library/node", true},
		{"ghcr.io/**/api", "ghcr.io/org/app/api", true},
		{"ghcr.io/**/api", "ghcr.io/org/app/web", false},
		{"library/node", "library/nodes", false},
		{"[", "x", false},
	}
	for _, tt := range tests {
		t.Run(tt.pattern+" "+tt.name, func(t *testing.T) {
			t.Parallel()
			if got := Match(tt.pattern, tt.name); got != tt.want {
				t.Fatalf("Match(%q, %q) = %v, want %v", tt.pattern, tt.name, got, tt.want)
			}
		})
	}
	if err := Check("a/["); err == nil {
		t.Fatal("Check accepted a malformed pattern")
	}
}

func TestMatchTag(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern, tag string
		want         bool
	}{
		{"20*", "20.1", true},
		{"v1.31.*", "v1.31.4", true},
		{"v1.31.*", "v1.32.0", false},
		{"latest", "latest", true},
		{"[", "[", false},
	}
	for _, tt := range tests {
		if got := MatchTag(tt.pattern, tt.tag); got != tt.want {
			t.Errorf("MatchTag(%q, %q) = %v, want %v", tt.pattern, tt.tag, got, tt.want)
		}
	}
	for _, bad := range []string{"[", "20/*"} {
		if err := CheckTag(bad); err == nil {
			t.Errorf("CheckTag(%q) accepted it", bad)
		}
	}
	if err := CheckTag("20*"); err != nil {
		t.Errorf("CheckTag(20*): %v", err)
	}
}
