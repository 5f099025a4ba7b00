package mirror

import "testing"

func TestMatchRepo(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern, repo string
		want          bool
	}{
		{"library/*", "library/node", true},
		{"library/*", "library/node/sub", false},
		{"library/*", "library", false},
		{"org/**", "org/app", true},
		{"org/**", "org/team/app", true},
		{"org/**", "org", true},
		{"org/**", "orgs/app", false},
		{"**/app", "app", true},
		{"**/app", "a/b/app", true},
		{"**/app", "a/b/apps", false},
		{"org/**/app", "org/app", true},
		{"org/**/app", "org/x/y/app", true},
		{"org/**/app", "org/x/y/tool", false},
		{"**", "anything/at/all", true},
		{"team-?/app", "team-a/app", true},
		{"team-[ab]/*", "team-c/app", false},
		{"org/app", "org/app", true},
		{"org/app", "org/app2", false},
	}
	for _, tt := range tests {
		if got := matchRepo(tt.pattern, tt.repo); got != tt.want {
			t.Errorf("matchRepo(%q, %q) = %v, want %v", tt.pattern, tt.repo, got, tt.want)
		}
	}
}

func TestPermits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		allow, deny []string
		repo        string
		want        bool
	}{
		{"no policy", nil, nil, "any/repo", true},
		{"allowed", []string{"library/*"}, nil, "library/node", true},
		{"not allowed", []string{"library/*"}, nil, "org/app", false},
		{"denied", nil, []string{"org/**"}, "org/app", false},
		{"deny wins over allow", []string{"org/**"}, []string{"org/secret"}, "org/secret", false},
		{"allow beside a deny", []string{"org/**"}, []string{"org/secret"}, "org/public", true},
	}
	for _, tt := range tests {
		r := &Remote{Allow: tt.allow, Deny: tt.deny}
		if got := r.permits(tt.repo); got != tt.want {
			t.Errorf("%s: permits(%q) = %v, want %v", tt.name, tt.repo, got, tt.want)
		}
	}
}

func TestCheckPatterns(t *testing.T) {
	t.Parallel()
	if err := checkPatterns([]string{"library/*", "org/**", "a/[bc]"}); err != nil {
		t.Fatalf("valid patterns refused: %v", err)
	}
	for _, bad := range []string{"", "org/[", `org/\`} {
		if err := checkPatterns([]string{bad}); err == nil {
			t.Errorf("pattern %q accepted", bad)
		}
	}
}
