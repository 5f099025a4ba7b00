package mirror

import (
	"fmt"
	"slices"
)

// Action is what a Permission grants on hosted repositories, named as in
// the scopes of the Docker token specification.
type Action string

// The actions on hosted repositories.
const (
	ActionPull   Action = "pull"
	ActionPush   Action = "push"
	ActionDelete Action = "delete"
)

// AnyUser in Permission.Users grants to every user who logged in.
const AnyUser = "*"

// Permission grants Actions on the hosted repositories that Repositories
// (globs, see matchRepo) name, to Users, to the members of Groups and, when
// Anonymous is set, to every client, logged in or not.
type Permission struct {
	Repositories []string
	Users        []string
	Groups       []string
	Anonymous    bool
	Actions      []Action
}

// Validate reports why p cannot be used: no repositories or a malformed
// glob among them, nobody or nothing granted, an unknown action, or more
// than pull granted to anonymous clients. HostedOptions are checked with
// it; a configuration checks it first to place the problem.
func (p Permission) Validate() error {
	if len(p.Repositories) == 0 {
		return fmt.Errorf("a permission names no repositories")
	}
	if err := checkPatterns(p.Repositories); err != nil {
		return err
	}
	if len(p.Users) == 0 && len(p.Groups) == 0 && !p.Anonymous {
		return fmt.Errorf("the permission for %v grants to nobody: name users, groups or anonymous", p.Repositories)
	}
	if len(p.Actions) == 0 {
		return fmt.Errorf("the permission for %v grants no action", p.Repositories)
	}
	for _, a := range p.Actions {
		if a != ActionPull && a != ActionPush && a != ActionDelete {
			return fmt.Errorf("unknown action %q: want pull, push or delete", a)
		}
	}
	if p.Anonymous && slices.ContainsFunc(p.Actions, func(a Action) bool { return a != ActionPull }) {
		return fmt.Errorf("the permission for %v grants %v to anonymous clients: only pull may be", p.Repositories, p.Actions)
	}
	return nil
}

// grants reports whether p lets who do a on the hosted repository name.
// A user is a member of a group that groups lists them in, or that the
// user directory puts them in.
func (p Permission) grants(who principal, groups map[string][]string, name string, a Action) bool {
	if !slices.Contains(p.Actions, a) || !matchesAny(p.Repositories, name) {
		return false
	}
	if p.Anonymous {
		return true
	}
	if who.user == "" {
		return false
	}
	if slices.Contains(p.Users, AnyUser) || slices.Contains(p.Users, who.user) {
		return true
	}
	return slices.ContainsFunc(p.Groups, func(g string) bool {
		return slices.Contains(groups[g], who.user) || slices.Contains(who.groups, g)
	})
}

// defaultPermissions are the grants of a configuration that lists none:
// every user may pull and push every hosted repository (and delete, where
// deleting is on), and anonymous clients may pull unless pulls are private.
func defaultPermissions(patterns []string, privatePulls bool) []Permission {
	perms := []Permission{{Repositories: patterns, Users: []string{AnyUser},
		Actions: []Action{ActionPull, ActionPush, ActionDelete}}}
	if !privatePulls {
		perms = append(perms, Permission{Repositories: patterns, Anonymous: true, Actions: []Action{ActionPull}})
	}
	return perms
}

// allowed reports whether who may do a on the hosted repository name: a
// permission grants it, deleting is on for deletes, and a token, when the
// client sent one, was granted it too. A token never takes away what
// anonymous clients may do: a client holding one for another scope still
// pulls what everyone may pull.
func (h *hostedRepos) allowed(who principal, name string, a Action) bool {
	if a == ActionDelete && !h.allowDelete {
		return false
	}
	if who.token && !who.access.grants(name, a) {
		return h.permitted(principal{}, name, a)
	}
	return h.permitted(who, name, a)
}

// permitted reports whether a permission lets who do a on name, whatever
// token the client holds: what the token endpoint grants.
func (h *hostedRepos) permitted(who principal, name string, a Action) bool {
	if !matchesAny(h.patterns, name) {
		return false
	}
	return slices.ContainsFunc(h.permissions, func(p Permission) bool { return p.grants(who, h.groups, name, a) })
}
