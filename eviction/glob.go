package eviction

import (
	"fmt"
	"path"
	"strings"
)

// Globs match repository names. A pattern follows path.Match, where `*`
// stops at `/`, and is tried against the full cached name
// ("docker.io/library/node") and against the name without its registry
// ("library/node"), so that "library/*" and "docker.io/library/*" both
// select Docker Hub's official images.
type Globs []string

// ParseGlobs checks every pattern.
func ParseGlobs(patterns []string) (Globs, error) {
	for _, p := range patterns {
		if _, err := path.Match(p, ""); err != nil {
			return nil, fmt.Errorf("repository pattern %q: %w", p, err)
		}
	}
	return Globs(patterns), nil
}

// Match reports whether repo matches any of the patterns.
func (g Globs) Match(repo string) bool {
	_, withoutHost, _ := strings.Cut(repo, "/")
	for _, p := range g {
		if ok, _ := path.Match(p, repo); ok {
			return true
		}
		if ok, _ := path.Match(p, withoutHost); ok && withoutHost != "" {
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
