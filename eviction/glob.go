package eviction

import (
	"strings"

	"github.com/regmirror/regmirror/internal/repoglob"
)

// Globs match repository names. A pattern is in the project's glob dialect
// (internal/repoglob: `*` stops at `/`, a `**` component crosses it), and is tried against the full cached name
// ("docker.io/library/node") and against the name without its registry
// ("library/node"), so that "library/*" and "docker.io/library/*" both
// select Docker Hub's official images.
type Globs []string

// ParseGlobs checks every pattern.
func ParseGlobs(patterns []string) (Globs, error) {
	for _, p := range patterns {
		if err := repoglob.Check(p); err != nil {
			return nil, err
		}
	}
	return Globs(patterns), nil
}

// Match reports whether repo matches any of the patterns.
func (g Globs) Match(repo string) bool {
	for _, p := range g {
		if matchRepo(p, repo) {
			return true
		}
	}
	return false
}

// MatchAny reports whether any of repos matches.
func (g Globs) MatchAny(repos []string) bool {
	for _, r := range repos {
		if g.Match(r) {
			return true
		}
	}
	return false
}

// MatchAll reports whether repos is not empty and every one matches.
func (g Globs) MatchAll(repos []string) bool {
	for _, r := range repos {
		if !g.Match(r) {
			return false
		}
	}
	return len(repos) > 0
}

// matchRepo matches pattern against the full cached name and against the
// name without its registry.
func matchRepo(pattern, repo string) bool {
	if repoglob.Match(pattern, repo) {
		return true
	}
	_, withoutHost, _ := strings.Cut(repo, "/")
	return withoutHost != "" && repoglob.Match(pattern, withoutHost)
}
