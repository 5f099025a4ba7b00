package mirror

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
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
func challenge(w http.ResponseWriter, why string) error {
	w.Header().Set("WWW-Authenticate", `Basic realm="`+basicRealm+`"`)
	return newError(codeUnauthorized, "%s", why)
}

// Htpasswd holds users and bcrypt password hashes from an htpasswd file
// (`htpasswd -B`). A password that verified is remembered for
// htpasswdVerifiedTTL as its SHA-256, so a push of many requests costs one
// bcrypt comparison rather than one per request; only the hash of the last
// verified password of each user is kept, in memory. Safe for concurrent use.
type Htpasswd struct {
	hashes map[string][]byte
	now    func() time.Time

	mu       sync.Mutex
	verified map[string]verifiedPassword
}

type verifiedPassword struct {
	sum [sha256.Size]byte
	at  time.Time
}

// htpasswdVerifiedTTL bounds how long a verified password is remembered, so
// a password changed in the file takes effect on the next load anyway and a
// remembered one does not outlive a working day.
const htpasswdVerifiedTTL = 10 * time.Minute

var _ Authenticator = (*Htpasswd)(nil)

// ParseHtpasswd reads "user:hash" lines; blank lines and lines starting with
// '#' are skipped. Only bcrypt hashes are accepted: the other htpasswd
// formats (MD5, SHA-1, crypt) are too weak to store.
func ParseHtpasswd(r io.Reader) (*Htpasswd, error) {
	h := &Htpasswd{hashes: make(map[string][]byte), now: time.Now, verified: make(map[string]verifiedPassword)}
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
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return nil, fmt.Errorf("htpasswd line %d (user %s): not a bcrypt hash; create it with htpasswd -B", line, user)
		}
		if _, dup := h.hashes[user]; dup {
			return nil, fmt.Errorf("htpasswd line %d: user %s appears twice", line, user)
		}
		h.hashes[user] = []byte(hash)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading htpasswd: %w", err)
	}
	if len(h.hashes) == 0 {
		return nil, errors.New("htpasswd has no users")
	}
	return h, nil
}

// Authenticate implements Authenticator.
func (h *Htpasswd) Authenticate(user, password string) bool {
	hash, ok := h.hashes[user]
	if !ok {
		return false
	}
	sum := sha256.Sum256([]byte(password))
	if h.recentlyVerified(user, sum) {
		return true
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil {
		return false
	}
	h.mu.Lock()
	h.verified[user] = verifiedPassword{sum: sum, at: h.now()}
	h.mu.Unlock()
	return true
}

func (h *Htpasswd) recentlyVerified(user string, sum [sha256.Size]byte) bool {
	h.mu.Lock()
	v, ok := h.verified[user]
	h.mu.Unlock()
	return ok && h.now().Sub(v.at) < htpasswdVerifiedTTL &&
		subtle.ConstantTimeCompare(v.sum[:], sum[:]) == 1
}
