package mirror

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
)

// principal is who sent a request, as the hosted repositories' permissions
// see it: a user, or "" for a client that did not log in, the groups the
// user directory puts the user in, and, when the request came with a
// token, what the token grants; a token limits what its user's
// permissions allow to the scopes it was issued for.
type principal struct {
	user   string
	groups []string
	token  bool
	access tokenAccess
}

// loggedIn reports whether the client proved to be one of the users.
func (p principal) loggedIn() bool { return p.user != "" }

// principalOf works out who sent r. ok is false when r carries credentials
// or a token that do not verify: such a client is anonymous for pulls and
// is challenged when it needs to log in.
func (h *hostedRepos) principalOf(r *http.Request) (p principal, ok bool) {
	if name, password, basic := r.BasicAuth(); basic {
		// Through the login limits (logins.go): once a client address or a
		// user name has used up its failed logins, its credentials count
		// as invalid unchecked; pulls go on anonymously, writes are
		// answered by refuseLogin.
		res := h.logins.login(r.Context(), clientAddress(r), name, password)
		if res.outcome != loginOK {
			return principal{}, false
		}
		return res.who, true
	}
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return principal{}, r.Header.Get("Authorization") == ""
	}
	claims, valid := h.tokens.verify(strings.TrimSpace(token))
	if !valid {
		return principal{}, false
	}
	return principal{user: claims.User, groups: claims.Groups, token: true, access: claims.Access}, true
}

// clientKey carries who the client is, worked out only if asked.
type clientKey struct{}

// lazyPrincipal is who a request's client is, worked out on first use.
// Safe for concurrent use.
type lazyPrincipal struct {
	once    sync.Once
	resolve func() principal
	p       principal
	done    atomic.Bool // p is set
	// refuse answers a write this client may not make for want of a
	// valid login (see hostedRepos.refuseLogin).
	refuse func(why string) error
}

// get works out who the client is, the first time at the cost of checking
// its credentials (a bcrypt comparison, for a password).
func (l *lazyPrincipal) get() principal {
	l.once.Do(func() {
		l.p = l.resolve()
		l.done.Store(true)
	})
	return l.p
}

// known returns who the client is if that was worked out already.
func (l *lazyPrincipal) known() (principal, bool) {
	if !l.done.Load() {
		return principal{}, false
	}
	return l.p, true
}

// withClient records in ctx how to tell who r's client is; the credentials
// are checked (a bcrypt comparison, for a password) only if a handler asks.
// The access log learns through the request's notes what was found.
func (m *Mirror) withClient(ctx context.Context, r *http.Request) context.Context {
	if m.hosted == nil || r.Header.Get("Authorization") == "" {
		return ctx
	}
	who := &lazyPrincipal{resolve: func() principal {
		p, _ := m.hosted.principalOf(r)
		return p
	}, refuse: func(why string) error { return m.hosted.refuseLogin(r, why) }}
	notesFrom(ctx).client = who
	return context.WithValue(ctx, clientKey{}, who)
}

// withoutClient is ctx without who its client is, a peer replica
// included: work shared by several clients runs as nobody's.
func withoutClient(ctx context.Context) context.Context {
	return context.WithValue(context.WithValue(ctx, clientKey{}, nil), trustedPeerKey{}, false)
}

// clientOf returns who the request of ctx came from; anonymous when it
// brought no valid credentials.
func clientOf(ctx context.Context) principal {
	who, ok := ctx.Value(clientKey{}).(*lazyPrincipal)
	if !ok {
		return principal{}
	}
	return who.get()
}

// loggedUser is the user the access log names for r: the one its handling
// found the client to be, or else, if that is cheap to learn, the one its
// credentials prove: a token (an HMAC to check) or a password the users
// remember. A password is never checked just for the log: a bcrypt
// comparison per pull would cost more than serving it. A name that was
// not verified is never logged either: people type passwords into the
// user name field.
func (m *Mirror) loggedUser(r *http.Request, who *lazyPrincipal) string {
	if who == nil {
		return ""
	}
	if p, ok := who.known(); ok {
		return p.user
	}
	name, password, basic := r.BasicAuth()
	if !basic {
		return who.get().user
	}
	users := m.hosted.logins.users
	if rc, ok := users.local.(recaller); ok && users.isLocal(name) {
		if valid, known := rc.recall(name, password); known && valid {
			return name
		}
	}
	return ""
}

// clientAuthenticated reports whether the client logged in as one of the
// mirror's users, or is a replica of the cluster (WithTrustedPeer), which
// authorized its own client: such a client may read what the mirror's own
// upstream credentials read.
func clientAuthenticated(ctx context.Context) bool {
	return fromTrustedPeer(ctx) || clientOf(ctx).loggedIn()
}

// User returns the mirror user that r authenticates as: the user of valid
// Basic credentials or of a valid user token. ok is false for a request
// without credentials, with wrong ones, or with an anonymous token, and
// always on a mirror without hosted repositories, which has no users.
// Other parts of the daemon (the status page) use it to decide what a
// request may see.
func (m *Mirror) User(r *http.Request) (user string, ok bool) {
	if m.hosted == nil {
		return "", false
	}
	p, valid := m.hosted.principalOf(r)
	if !valid || !p.loggedIn() {
		return "", false
	}
	return p.user, true
}

// refuseLogin answers a write by a client without a valid login: a
// challenge, or 429 when its failed logins are used up.
func refuseLogin(ctx context.Context, why string) error {
	if who, ok := ctx.Value(clientKey{}).(*lazyPrincipal); ok && who.refuse != nil {
		return who.refuse(why)
	}
	return challenge(why)
}
