// Package repoglob is the project's one glob dialect over repository names.
// A pattern is split at `/` like the name; each component follows
// path.Match, where `*` stays within the component, and a component that is
// exactly `**` matches any number of components, none included. So
// "library/*" matches "library/node" but not "library/a/b", and "team/**"
// matches "team", "team/app" and "team/app/api". A tag has no `/`, so a tag
// pattern is one component: MatchTag and CheckTag.
//
// Every pattern of the project over repository names or tags goes through
// this package, so that one setting cannot mean one level in one place and
// any depth in another (docs/configuration.md, "Repository globs").
package repoglob

import (
	"fmt"
	"path"
	"strings"
)

// Check reports a pattern that path.Match cannot use.
func Check(pattern string) error {
	for _, c := range strings.Split(pattern, "/") {
		if _, err := path.Match(c, ""); err != nil {
			return fmt.Errorf("repository pattern %q: %w", pattern, err)
		}
	}
	return nil
}

// Match reports whether name matches pattern. A malformed pattern matches
// nothing.
func Match(pattern, name string) bool {
	return matchComponents(strings.Split(pattern, "/"), strings.Split(name, "/"))
}

// CheckTag reports a tag pattern that cannot be used: a malformed one, or
// one with a `/`, which no tag has.
func CheckTag(pattern string) error {
	if strings.Contains(pattern, "/") {
		return fmt.Errorf("tag pattern %q: a tag has no /", pattern)
	}
	if _, err := path.Match(pattern, ""); err != nil {
		return fmt.Errorf("tag pattern %q: %w", pattern, err)
	}
	return nil
}

// MatchTag reports whether tag matches pattern, a single component. A
// malformed pattern matches nothing.
func MatchTag(pattern, tag string) bool {
	ok, _ := path.Match(pattern, tag)
	return ok
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
