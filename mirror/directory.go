package mirror

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// Directory is a service that knows users and their groups and is asked
// over the network, such as LDAP or Active Directory. The daemon hands
// one to the mirror through HostedOptions.Directory.
type Directory interface {
	// Login checks user's password. ok is false, with a nil error, for a
	// user the directory does not know and for a wrong password. An error
	// means the directory could not decide (it is unreachable, say): the
	// login is refused with a message that says so, and is not counted as a
	// failed guess.
	Login(ctx context.Context, user, password string) (u DirectoryUser, ok bool, err error)
}

// DirectoryUser is a user whose password a Directory accepted.
type DirectoryUser struct {
	// Name is the user's name as the directory spells it, which permissions
	// and per-user caps go by, whatever case the client typed.
	Name string
	// Groups are the names of the user's groups, which permissions match
	// as they match the members of HostedOptions.Groups.
	Groups []string
}

// DefaultDirectoryMemory is how long a directory's answer is remembered
// when HostedOptions.DirectoryMemory is zero: long enough that a push of
// many requests with Basic credentials asks the directory once, short
// enough that a locked or removed account stops working within minutes.
const DefaultDirectoryMemory = time.Minute

// directoryLoginFailed is what a client is told when the directory could
// not check its login.
const directoryLoginFailed = "login not checked: the user directory (LDAP) is not answering; try again later"

// directoryUsers asks a Directory and remembers its answers for ttl, as
// keyed hashes of the user and password, never the passwords: the last
// accepted password of each name, with the user it stands for, and
// recently refused pairs, so that repeating a login costs the directory
// nothing and a repeated wrong password is not a new guess. Answers the
// directory could not give are not remembered. Safe for concurrent use.
type directoryUsers struct {
	dir Directory
	ttl time.Duration
	now func() time.Time
	log *slog.Logger
	// named are the groups permissions name: the others are dropped, so
	// tokens carry no more of a user's groups than the permissions need.
	named []string
	key   [32]byte

	mu       sync.Mutex
	verified map[string]rememberedLogin // by the name logged in with
	failed   map[[sha256.Size]byte]time.Time
}

type rememberedLogin struct {
	sum [sha256.Size]byte
	at  time.Time
	who principal
}

func newDirectoryUsers(dir Directory, ttl time.Duration, named []string, now func() time.Time, log *slog.Logger) *directoryUsers {
	if ttl <= 0 {
		ttl = DefaultDirectoryMemory
	}
	d := &directoryUsers{dir: dir, ttl: ttl, now: now, log: log, named: named,
		verified: make(map[string]rememberedLogin), failed: make(map[[sha256.Size]byte]time.Time)}
	rand.Read(d.key[:]) // never fails
	return d
}

// recall answers from memory: known reports whether it could; who is
// anonymous for a refused login.
func (d *directoryUsers) recall(user, password string) (who principal, known bool) {
	sum := keyedSum(&d.key, user, password)
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	if v, found := d.verified[user]; found && now.Sub(v.at) < d.ttl && hmac.Equal(v.sum[:], sum[:]) {
		return v.who, true
	}
	if at, found := d.failed[sum]; found && now.Sub(at) < d.ttl {
		return principal{}, true
	}
	return principal{}, false
}

// check asks the directory and remembers its answer; who is anonymous for
// a refused login. An error is the directory's failure to answer, logged
// here with the user's name (never the password).
func (d *directoryUsers) check(ctx context.Context, user, password string) (who principal, err error) {
	u, ok, err := d.dir.Login(ctx, user, password)
	if err != nil {
		if ctx.Err() == nil {
			d.log.Warn("login not checked: the user directory failed", "user", user, "err", err)
		}
		return principal{}, err
	}
	if ok && u.Name != "" {
		who = principal{user: u.Name, groups: slices.DeleteFunc(slices.Clone(u.Groups), func(g string) bool {
			return !slices.Contains(d.named, g)
		})}
	}
	d.remember(user, password, who)
	return who, nil
}

func (d *directoryUsers) remember(user, password string, who principal) {
	sum := keyedSum(&d.key, user, password)
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	if who.loggedIn() {
		d.verified[user] = rememberedLogin{sum: sum, at: now, who: who}
		return
	}
	if len(d.failed) >= maxRememberedFailures {
		for k, at := range d.failed {
			if now.Sub(at) >= d.ttl {
				delete(d.failed, k)
			}
		}
	}
	if len(d.failed) < maxRememberedFailures {
		d.failed[sum] = now
	}
}

// keyedSum is a keyed hash of a user and password: it identifies a login
// attempt without keeping anything a stolen memory dump could crack.
func keyedSum(key *[32]byte, user, password string) [sha256.Size]byte {
	mac := hmac.New(sha256.New, key[:])
	mac.Write([]byte(user))
	mac.Write([]byte{0})
	mac.Write([]byte(password))
	var sum [sha256.Size]byte
	mac.Sum(sum[:0])
	return sum
}

// accounts are the users logins are checked against: the local ones
// (HostedOptions.Users, an htpasswd file) and the directory's. A name the
// local users hold is theirs alone: its password never goes to the
// directory, and no directory user whose name it is may log in.
type accounts struct {
	local     Authenticator   // nil: none
	directory *directoryUsers // nil: none
	log       *slog.Logger
}

// userHolder is an Authenticator that tells which users it holds
// (Htpasswd), as one used beside a Directory must.
type userHolder interface {
	holds(user string) bool
}

// isLocal reports whether user's logins are the local users' to check.
func (a accounts) isLocal(user string) bool {
	if a.directory == nil {
		return true
	}
	h, ok := a.local.(userHolder)
	return ok && h.holds(user)
}

// recall answers from what the users remember: known reports whether
// they could; who is anonymous for a refused login.
func (a accounts) recall(user, password string) (who principal, known bool) {
	if !a.isLocal(user) {
		who, known = a.directory.recall(user, password)
		return a.notLocal(who), known
	}
	r, ok := a.local.(recaller)
	if !ok {
		return principal{}, false
	}
	valid, known := r.recall(user, password)
	if !valid {
		return principal{}, known
	}
	return principal{user: user}, true
}

// check checks user's password; who is anonymous for a refused login. An
// error means the directory could not decide.
func (a accounts) check(ctx context.Context, user, password string) (who principal, err error) {
	if !a.isLocal(user) {
		who, err = a.directory.check(ctx, user, password)
		return a.notLocal(who), err
	}
	if !a.local.Authenticate(user, password) {
		return principal{}, nil
	}
	return principal{user: user}, nil
}

// notLocal refuses a directory user whose name a local user holds (the
// directory spells "CI-Bot" as "ci-bot", say): it would act as that user.
func (a accounts) notLocal(who principal) principal {
	if h, ok := a.local.(userHolder); ok && who.loggedIn() && h.holds(who.user) {
		a.log.Warn("login refused: a directory user has the name of an htpasswd user", "user", who.user)
		return principal{}
	}
	return who
}
