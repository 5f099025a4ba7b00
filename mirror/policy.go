package mirror

import (
	"fmt"
	"path"
	"strings"
)

// checkPatterns reports the first malformed repository glob of patterns.
func checkPatterns(patterns []string) error {
	for _, p := range patterns {
		if p == "" {
			return fmt.Errorf("empty repository pattern")
		}
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("repository pattern %q: %w", p, err)
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

// matchRepo matches a repository path against a glob. Each "/"-separated
// component is matched with path.Match, so "*" stays within a component,
// and a component "**" matches any number of components, including none:
// "org/*" matches "org/app" but not "org/team/app"; "org/**" matches both.
func matchRepo(pattern, repo string) bool {
	return matchComponents(strings.Split(pattern, "/"), strings.Split(repo, "/"))
}

func matchComponents(pattern, name []string) bool {
	for len(pattern) > 0 {
		if pattern[0] == "**" {
			for skip := 0; skip <= len(name); skip++ {
				if matchComponents(pattern[1:], name[skip:]) {
					return true
				}
			}
			return false
		}
		if len(name) == 0 {
			return false
		}
		if ok, _ := path.Match(pattern[0], name[0]); !ok {
			return false
		}
		pattern, name = pattern[1:], name[1:]
	}
	return len(name) == 0
}
