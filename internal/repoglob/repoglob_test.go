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
