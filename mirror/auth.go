package mirror

import (
	"bufio"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/regmirror/regmirror/internal/ociserver"
)

// Authenticator checks the credentials clients send with HTTP Basic
// authorization, as `docker login` stores them.
type Authenticator interface {
	// Authenticate reports whether password is user's.
	Authenticate(user, password string) bool
}

// basicRealm names the mirror in its challenges.
const basicRealm = "regmirror"

// challenge answers a request that needs credentials: 401 with a Basic
// challenge, which containerd and the other clients that take a challenge
// from any response answer with the credentials stored for the mirror.
// dockerd takes its challenge from the ping (see auth_token.go) and comes
// with a token instead.
func challenge(why string) error {
	return &Error{Code: ociserver.CodeUnauthorized, Message: why, Challenge: `Basic realm="` + basicRealm + `"`}
}

// refuseLogin answers a write whose Authorization is missing or invalid:
// 429 with Retry-After when the client address or the user has used up its
// failed logins, so a password guesser learns nothing more, else a
// challenge. Pull paths never call it: they challenge or go on anonymously.
func (h *hostedRepos) refuseLogin(r *http.Request, why string) error {
	if name, password, basic := r.BasicAuth(); basic {
		// The login was just tried: this repeats its outcome from memory.
		switch res := h.logins.login(r.Context(), clientAddress(r), name, password); res.outcome {
		case loginLimited:
			return tooManyLogins(res.wait)
		case loginUnavailable:
			why = directoryLoginFailed
		}
	}
	return challenge(why)
}

// tokenUser checks the Basic credentials of a token request once, under
// the login limits, and returns whom the token is for. A request that asks
// to log in or push gets 429 when its client or user is limited, and 401
// for wrong credentials or when the user directory could not check them;
// one that asks only to pull gets an anonymous token whatever its
// credentials (they may be another registry's: see auth_token.go), and
// never a 429.
func (h *hostedRepos) tokenUser(w http.ResponseWriter, r *http.Request) (principal, error) {
	name, password, basic := r.BasicAuth()
	if !basic {
		return principal{}, nil
	}
	res := h.logins.login(r.Context(), clientAddress(r), name, password)
	switch {
	case res.outcome == loginOK:
		return res.who, nil
	case !wantsWrite(r):
		return principal{}, nil
	case res.outcome == loginLimited:
		return principal{}, tooManyLogins(res.wait)
	case res.outcome == loginUnavailable:
		return principal{}, newError(ociserver.CodeUnauthorized, directoryLoginFailed)
	}
	return principal{}, newError(ociserver.CodeUnauthorized, "incorrect username or password")
}

// MinBcryptCost is the lowest bcrypt cost the daemon accepts in an
// htpasswd file (see Htpasswd.CheckCost): at cost 10 one comparison takes
// tens of milliseconds, which keeps guessing slow, online and offline.
const MinBcryptCost = 10

// Htpasswd holds users and bcrypt password hashes from an htpasswd file
// (`htpasswd -B`). A login for a user the file does not name compares the
// password with a dummy hash of the file's highest cost, so it costs what a
// wrong password of a real user costs and tells nobody which users exist.
//
// Answers are remembered for htpasswdMemoryTTL as keyed hashes, never the
// passwords: the last verified password of each user, so a push of many
// requests costs one bcrypt comparison rather than one per request, and
// recently failed user and password pairs, so repeating a wrong password
// costs none (and is not a new guess). Replace swaps in a new file, with a
// fresh memory. Safe for concurrent use.
type Htpasswd struct {
	file atomic.Pointer[htpasswdFile]
	now  func() time.Time
	// compare is bcrypt.CompareHashAndPassword; tests count calls through it.
	compare func(hash, password []byte) error
}

// htpasswdFile is one loaded htpasswd file and what was learned about its
// passwords. hashes and dummy are set once.
type htpasswdFile struct {
	hashes map[string][]byte
	dummy  []byte
	key    [32]byte // keys the hashes of remembered passwords

	mu       sync.Mutex
	verified map[string]rememberedPassword // by user
	failed   map[[sha256.Size]byte]time.Time
}

type rememberedPassword struct {
	sum [sha256.Size]byte
	at  time.Time
}

// htpasswdMemoryTTL bounds how long an answer is remembered, so that a
// remembered password does not outlive a working day's push and a password
// that failed is checked again after a while.
const htpasswdMemoryTTL = 10 * time.Minute

// maxRememberedFailures bounds the memory of failed passwords; past it,
// failures are checked again, which the login limits still count.
const maxRememberedFailures = 4096

var _ Authenticator = (*Htpasswd)(nil)

// ParseHtpasswd reads "user:hash" lines; blank lines and lines starting with
// '#' are skipped. Only bcrypt hashes are accepted: the other htpasswd
// formats (MD5, SHA-1, crypt) are too weak to store. The daemon also
// refuses hashes cheaper than MinBcryptCost, with CheckCost.
func ParseHtpasswd(r io.Reader) (*Htpasswd, error) {
	f, err := parseHtpasswdFile(r)
	if err != nil {
		return nil, err
	}
	h := &Htpasswd{now: time.Now, compare: bcrypt.CompareHashAndPassword}
	h.file.Store(f)
	return h, nil
}

func parseHtpasswdFile(r io.Reader) (*htpasswdFile, error) {
	f := &htpasswdFile{
		hashes:   make(map[string][]byte),
		verified: make(map[string]rememberedPassword),
		failed:   make(map[[sha256.Size]byte]time.Time),
	}
	rand.Read(f.key[:]) // never fails
	highest := bcrypt.MinCost
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		user, hash, ok := strings.Cut(text, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("htpasswd line %d: want user:hash", line)
		}
		cost, err := bcrypt.Cost([]byte(hash))
		if err != nil {
			return nil, fmt.Errorf("htpasswd line %d (user %s): not a bcrypt hash; create it with htpasswd -B", line, user)
		}
		if _, dup := f.hashes[user]; dup {
			return nil, fmt.Errorf("htpasswd line %d: user %s appears twice", line, user)
		}
		f.hashes[user] = []byte(hash)
		highest = max(highest, cost)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading htpasswd: %w", err)
	}
	if len(f.hashes) == 0 {
		return nil, errors.New("htpasswd has no users")
	}
	var secret [16]byte
	rand.Read(secret[:])
	dummy, err := bcrypt.GenerateFromPassword(secret[:], highest)
	if err != nil {
		return nil, fmt.Errorf("htpasswd: making the hash that unknown users are checked against: %w", err)
	}
	f.dummy = dummy
	return f, nil
}

// CheckCost fails when a user's hash has a bcrypt cost below minCost,
// naming the user (never the hash).
func (h *Htpasswd) CheckCost(minCost int) error {
	var weak []string
	for user, hash := range h.file.Load().hashes {
		if cost, _ := bcrypt.Cost(hash); cost < minCost {
			weak = append(weak, fmt.Sprintf("%s (cost %d)", user, cost))
		}
	}
	if len(weak) == 0 {
		return nil
	}
	return fmt.Errorf("htpasswd: the bcrypt hashes of %s are too cheap: the minimum cost is %d; recreate them with regmirror htpasswd or htpasswd -B -C %d",
		strings.Join(weak, ", "), minCost, minCost)
}

// Replace makes next's users the ones h checks, forgetting what h
// remembered about the old ones. Logins in progress finish with the old file.
func (h *Htpasswd) Replace(next *Htpasswd) { h.file.Store(next.file.Load()) }

// Authenticate implements Authenticator.
func (h *Htpasswd) Authenticate(user, password string) bool {
	f := h.file.Load()
	if ok, known := f.recall(user, password, h.now()); known {
		return ok
	}
	hash, exists := f.hashes[user]
	if !exists {
		hash = f.dummy // the same work as for a user who exists
	}
	ok := h.compare(hash, []byte(password)) == nil && exists
	f.remember(user, password, ok, h.now())
	return ok
}

// recall answers from memory: known reports whether it could.
func (h *Htpasswd) recall(user, password string) (ok, known bool) {
	return h.file.Load().recall(user, password, h.now())
}

func (f *htpasswdFile) recall(user, password string, now time.Time) (ok, known bool) {
	sum := f.sum(user, password)
	f.mu.Lock()
	defer f.mu.Unlock()
	if v, found := f.verified[user]; found && now.Sub(v.at) < htpasswdMemoryTTL && hmac.Equal(v.sum[:], sum[:]) {
		return true, true
	}
	if at, found := f.failed[sum]; found && now.Sub(at) < htpasswdMemoryTTL {
		return false, true
	}
	return false, false
}

func (f *htpasswdFile) remember(user, password string, ok bool, now time.Time) {
	sum := f.sum(user, password)
	f.mu.Lock()
	defer f.mu.Unlock()
	if ok {
		f.verified[user] = rememberedPassword{sum: sum, at: now}
		return
	}
	if len(f.failed) >= maxRememberedFailures {
		for k, at := range f.failed {
			if now.Sub(at) >= htpasswdMemoryTTL {
				delete(f.failed, k)
			}
		}
	}
	if len(f.failed) < maxRememberedFailures {
		f.failed[sum] = now
	}
}

// sum is a keyed hash of a user and password (see keyedSum).
func (f *htpasswdFile) sum(user, password string) [sha256.Size]byte {
	return keyedSum(&f.key, user, password)
}

// holds reports whether the file names user.
func (h *Htpasswd) holds(user string) bool {
	_, ok := h.file.Load().hashes[user]
	return ok
}
