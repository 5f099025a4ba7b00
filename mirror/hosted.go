package mirror

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"github.com/regmirror/regmirror/internal/ociserver"
)

// HostedOptions turn on hosted repositories: clients push to the mirror's
// own URL, and pulls of hosted names are answered from what was pushed.
type HostedOptions struct {
	// Store keeps the pushed content. Required.
	Store Hosted
	// Users checks the credentials of clients that log in. Required unless
	// Directory is set; beside a Directory it must tell which users it
	// holds, as Htpasswd does.
	Users Authenticator
	// Directory checks the logins of the users that Users does not hold
	// (of all users, without Users) and tells their groups, which
	// permissions match like Groups. Its users may not take a name Users
	// holds.
	Directory Directory
	// DirectoryMemory is how long the Directory's answer to a login is
	// remembered (as a keyed hash, never the password), so that repeated
	// requests with the same credentials ask it once. Zero means
	// DefaultDirectoryMemory.
	DirectoryMemory time.Duration
	// Logins limits failed logins and the password checks running at once.
	Logins LoginLimits
	// Uploads caps what each user may push.
	Uploads UploadLimits
	// Repositories are globs of the names that are hosted ("team/*",
	// "team/**", "ghcr.io/org/*"; see matchRepo). A name of the default
	// registry is written without its host, e.g. "team/app", and
	// single-component names with "library/". Only these names take pushes,
	// and they are never looked up upstream, unless FallThrough says so:
	// whoever registers such a name upstream must not be able to serve it
	// here. None: nothing can be pushed.
	Repositories []string
	// FallThrough lists hosted names (globs) whose pulls go upstream when
	// the hosted repository lacks what is asked for, and whose tag lists
	// merge the upstream's, like a Nexus group.
	FallThrough []string
	// Groups lists the users of each group that Permissions name; the
	// Directory may put users in groups too.
	Groups map[string][]string
	// Permissions grant pull, push and delete on hosted repositories. None:
	// every user may pull and push every hosted repository, and anyone may
	// pull them unless PrivatePulls is set.
	Permissions []Permission
	// PrivatePulls, without Permissions, makes pulls from hosted
	// repositories need a login too. Pulls of names that are not hosted stay
	// anonymous whatever a client sends: a failed login never locks a client
	// out of proxied pulls.
	PrivatePulls bool
	// AllowDelete enables DELETE of hosted manifests, tags and blobs, for
	// those whom a permission grants delete.
	AllowDelete bool
	// TokenKeys sign the tokens the token endpoint hands out and verify
	// the tokens clients send. Replicas given the same keys accept one
	// another's tokens; Mirror.SetTokenKeys rotates them. The zero value
	// means a random key per process, so that a token is accepted only by
	// the process that issued it and until it restarts.
	TokenKeys TokenKeys
}

// hostedRepos is the mirror's hosted side. Its fields are set once.
type hostedRepos struct {
	store       Hosted
	logins      *loginGuard
	uploads     UploadLimits
	patterns    []string
	fallThrough []string
	groups      map[string][]string
	permissions []Permission
	allowDelete bool
	tokens      *tokenIssuer
	defaultHost string
}

func newHostedRepos(o *HostedOptions, defaultHost string, now func() time.Time, log *slog.Logger) (*hostedRepos, error) {
	if o.Store == nil {
		return nil, errors.New("hosted repositories need a store")
	}
	users, err := newAccounts(o, now, log)
	if err != nil {
		return nil, err
	}
	if err := checkPatterns(o.Repositories); err != nil {
		return nil, fmt.Errorf("hosted repositories: %w", err)
	}
	if err := checkPatterns(o.FallThrough); err != nil {
		return nil, fmt.Errorf("hosted fall-through: %w", err)
	}
	perms := o.Permissions
	if len(perms) == 0 {
		perms = defaultPermissions(o.Repositories, o.PrivatePulls)
	}
	for i, p := range o.Permissions {
		if err := p.Validate(); err != nil {
			return nil, fmt.Errorf("hosted permission %d: %w", i+1, err)
		}
	}
	tokens, err := newTokenIssuer(o.TokenKeys, now)
	if err != nil {
		return nil, fmt.Errorf("hosted repositories: %w", err)
	}
	return &hostedRepos{
		store:       o.Store,
		logins:      newLoginGuard(users, o.Logins, now),
		uploads:     o.Uploads.withDefaults(),
		patterns:    o.Repositories,
		fallThrough: o.FallThrough,
		groups:      o.Groups,
		permissions: perms,
		allowDelete: o.AllowDelete,
		tokens:      tokens,
		defaultHost: defaultHost,
	}, nil
}

// newAccounts returns the users of o, whom logins are checked against.
func newAccounts(o *HostedOptions, now func() time.Time, log *slog.Logger) (accounts, error) {
	if o.Users == nil && o.Directory == nil {
		return accounts{}, errors.New("hosted repositories need users to authenticate pushes")
	}
	if _, holder := o.Users.(userHolder); o.Users != nil && o.Directory != nil && !holder {
		return accounts{}, errors.New("hosted users beside a directory must tell which users they hold, as Htpasswd does")
	}
	a := accounts{local: o.Users, log: log}
	if o.Directory != nil {
		var named []string
		for _, p := range o.Permissions {
			named = append(named, p.Groups...)
		}
		a.directory = newDirectoryUsers(o.Directory, o.DirectoryMemory, named, now, log)
	}
	return a, nil
}

// resolveHostedName returns the hosted name of a repository name as a
// client sends it: the path on the default registry, else host and path.
func resolveHostedName(name, ns, defaultHost string) (string, error) {
	t, err := resolveTarget(name, ns, defaultHost)
	if err != nil {
		return "", err
	}
	if t.host != defaultHost {
		return t.host + "/" + t.path, nil
	}
	return t.path, nil
}

// isHostedName reports whether name is a hosted repository's.
func (h *hostedRepos) isHostedName(name string) bool { return matchesAny(h.patterns, name) }

// fallsThrough reports whether pulls of the hosted name may go upstream.
func (h *hostedRepos) fallsThrough(name string) bool { return matchesAny(h.fallThrough, name) }

// hostedMiss is what a pull of a hosted name that fell through to the
// upstream answers when the upstream failed with err. The name is hosted
// here, so content the hosted repository lacks is unknown (404), whatever
// the upstream says about its namesake: that it does not know it, or that
// the mirror may not read it or pass it on (401, 403). Failures a retry may
// cure (503, 502, 504) stay what they are.
func hostedMiss(err error, k kind, name, ref string) error {
	if deniesName(err) {
		return hostedNotFoundError(k, name, ref, err)
	}
	return err
}

// deniesName reports whether err is the answer that a name is unknown
// (404) or not to be read (401, 403), as opposed to a failure.
func deniesName(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.HTTPStatus() {
	case http.StatusNotFound, http.StatusUnauthorized, http.StatusForbidden:
		return true
	}
	return false
}

// hostedNotFoundError answers a pull of hosted content that is not there:
// ref (a tag or digest) of kind k in the hosted repository name. It wraps
// cause, kept for the log, or else fs.ErrNotExist.
func hostedNotFoundError(k kind, name, ref string, cause error) error {
	if cause == nil {
		cause = fs.ErrNotExist
	}
	if k == ociserver.KindTags {
		return &Error{Code: ociserver.CodeNameUnknown, Err: cause,
			Message: fmt.Sprintf("the hosted repository %s has no tags", truncate(name))}
	}
	return &Error{Code: notFoundCode(k), Err: cause,
		Message: fmt.Sprintf("%s is not in the hosted repository %s", truncate(ref), truncate(name))}
}

// serveBase answers the ping. A client with neither a token nor valid
// credentials gets a Bearer challenge: see auth_token.go for why docker
// needs one to log in and push, and why it must be Bearer.
func (h *hostedRepos) serveBase(w http.ResponseWriter, r *http.Request) error {
	if _, ok := h.principalOf(r); !ok || r.Header.Get("Authorization") == "" {
		return pingChallenge(r)
	}
	w.Header().Set("Content-Type", "application/json")
	_, err := w.Write([]byte("{}"))
	return err
}

// notFoundOrErr turns "no such registry" into the kind's not-found answer:
// for a repository that holds no such content, that is what it is.
func notFoundOrErr(err error, k kind) error {
	var e *Error
	if errors.As(err, &e) && e.Code == ociserver.CodeNameUnknown {
		return &Error{Code: notFoundCode(k), Message: "not found", Err: err}
	}
	return err
}

// hostedNotFound reports whether err means the hosted repository lacks
// what was asked for.
func hostedNotFound(err error) bool { return errors.Is(err, fs.ErrNotExist) }
