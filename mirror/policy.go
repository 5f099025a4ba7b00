package mirror

import (
	"fmt"

	"github.com/regmirror/regmirror/internal/repoglob"
)

// checkPatterns reports the first malformed repository glob of patterns.
func checkPatterns(patterns []string) error {
	for _, p := range patterns {
		if p == "" {
			return fmt.Errorf("empty repository pattern")
		}
		if err := repoglob.Check(p); err != nil {
			return err
		}
	}
	return nil
}

// permits reports whether the Remote's Allow and Deny patterns let repo
// (a repository path on the Remote's host, e.g. "library/node") be pulled.
// Deny wins over Allow; an empty Allow allows everything not denied.
func (r *Remote) permits(repo string) bool {
	if matchesAny(r.Deny, repo) {
		return false
	}
	return len(r.Allow) == 0 || matchesAny(r.Allow, repo)
}

func matchesAny(patterns []string, repo string) bool {
	for _, p := range patterns {
		if matchRepo(p, repo) {
			return true
		}
	}
	return false
}

// matchRepo matches a repository path against a glob of the project's one
// dialect (internal/repoglob): "*" stays within a component, a component
// "**" matches any number of components, including none: "org/*" matches
// "org/app" but not "org/team/app"; "org/**" matches both.
func matchRepo(pattern, repo string) bool { return repoglob.Match(pattern, repo) }
