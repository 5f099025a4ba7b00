package mirror_test

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/mirror"
)

// directoryStub is a Directory in memory, which tests can take down and
// whose logins they count. The LDAP one is tested against a real slapd in
// internal/ldapauth and cmd/regmirror; this one tests what the mirror does
// with a directory's answers.
type directoryStub struct {
	mu    sync.Mutex
	users map[string]directoryEntry // by lower-case name
	down  bool
	calls int
}

type directoryEntry struct {
	password string
	user     mirror.DirectoryUser
}

func (d *directoryStub) Login(ctx context.Context, user, password string) (mirror.DirectoryUser, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls++
	if d.down {
		return mirror.DirectoryUser{}, false, errors.New("connecting to ldap.example: connection refused")
	}
	e, ok := d.users[strings.ToLower(user)]
	if !ok || e.password != password {
		return mirror.DirectoryUser{}, false, nil
	}
	return e.user, true, nil
}

func (d *directoryStub) setDown(down bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.down = down
}

func (d *directoryStub) logins() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.calls
}

// newDirectoryStub holds carol, and alice with a password of her own, to
// show the htpasswd file's alice is never asked of it.
func newDirectoryStub() *directoryStub {
	return &directoryStub{users: map[string]directoryEntry{
		"carol": {password: "carol-password", user: mirror.DirectoryUser{Name: "carol", Groups: []string{"devs"}}},
		"alice": {password: "alice-directory-password", user: mirror.DirectoryUser{Name: "alice"}},
		// The directory spells BOB as bob, a name of the htpasswd file.
		"bob": {password: "bob-directory-password", user: mirror.DirectoryUser{Name: "bob"}},
	}}
}

// A directory's answers are remembered for DirectoryMemory: repeating a
// login, right or wrong, asks it nothing until then.
func TestDirectoryAnswersAreRememberedForDirectoryMemory(t *testing.T) {
	t.Parallel()
	dir := newDirectoryStub()
	const memory = 2 * time.Minute
	e := newLimitsEnv(t, mirror.HostedOptions{Directory: dir, DirectoryMemory: memory})
	login := func(password string, want int) {
		t.Helper()
		if got := e.do(t, nil, http.MethodGet, loginPath, nil, "carol", password); got.status != want {
			t.Fatalf("carol's login with %s = %d %s, want %d", password, got.status, got.body, want)
		}
	}
	login("carol-password", http.StatusOK)
	login("carol-password", http.StatusOK)
	login("wrong-password", http.StatusUnauthorized)
	login("wrong-password", http.StatusUnauthorized)
	if n := dir.logins(); n != 2 {
		t.Fatalf("the directory was asked %d times, want 2: one right and one wrong password", n)
	}
	e.clock.Advance(memory - time.Second)
	login("carol-password", http.StatusOK)
	if n := dir.logins(); n != 2 {
		t.Fatalf("the directory was asked %d times within the memory, want 2", n)
	}
	e.clock.Advance(time.Second)
	login("carol-password", http.StatusOK)
	if n := dir.logins(); n != 3 {
		t.Fatalf("the directory was asked %d times, want 3: the memory ended", n)
	}
}

// A directory that cannot answer fails logins with a message that says so,
// never as a wrong password, and such logins are no failed guesses: the
// client is not locked out once the directory is back. A login it
// accepted a moment before still works.
func TestDirectoryDownFailsLoginsClearlyWithoutLockingOut(t *testing.T) {
	t.Parallel()
	dir := newDirectoryStub()
	e := newLimitsEnv(t, mirror.HostedOptions{Directory: dir})
	if got := e.do(t, nil, http.MethodGet, loginPath, nil, "carol", "carol-password"); got.status != http.StatusOK {
		t.Fatalf("carol's login = %d, want 200", got.status)
	}
	dir.setDown(true)
	client := e.from("127.0.0.5")
	for i := range 2 * mirror.DefaultMaxFailedLoginsPerClient {
		got := e.do(t, client, http.MethodGet, loginPath, nil, "dave", "dave-password-"+strconv.Itoa(i))
		if got.status != http.StatusUnauthorized || !strings.Contains(string(got.body), "user directory (LDAP) is not answering") {
			t.Fatalf("login %d with the directory down = %d %s, want 401 naming the directory", i+1, got.status, got.body)
		}
	}
	got := e.do(t, client, http.MethodPost, "/v2/team/app/blobs/uploads/", nil, "dave", "dave-password")
	if got.status != http.StatusUnauthorized || !strings.Contains(string(got.body), "not answering") || got.header.Get("WWW-Authenticate") == "" {
		t.Errorf("a push with Basic credentials, the directory down = %d %s, want a 401 challenge naming the directory", got.status, got.body)
	}
	if got := e.do(t, client, http.MethodGet, loginPath, nil, "carol", "carol-password"); got.status != http.StatusOK {
		t.Errorf("carol's login just after her last one, the directory down = %d, want 200 from memory", got.status)
	}
	dir.setDown(false)
	if got := e.do(t, client, http.MethodGet, loginPath, nil, "carol", "another-password"); got.status != http.StatusUnauthorized ||
		!strings.Contains(string(got.body), "incorrect username or password") {
		t.Errorf("a wrong password, the directory back = %d %s, want 401 incorrect username or password", got.status, got.body)
	}
	dir.mu.Lock()
	dir.users["dave"] = directoryEntry{password: "dave-password", user: mirror.DirectoryUser{Name: "dave"}}
	dir.mu.Unlock()
	if got := e.do(t, client, http.MethodGet, loginPath, nil, "dave", "dave-password"); got.status != http.StatusOK {
		t.Errorf("dave's login once the directory is back = %d %s, want 200: an outage is no failed guess", got.status, got.body)
	}
}

// Beside the htpasswd file a directory answers for the other names only:
// the file's users' passwords never go to it, and a directory user whose
// name is one of the file's is refused.
func TestHtpasswdUsersAreNeverAskedOfTheDirectory(t *testing.T) {
	t.Parallel()
	dir := newDirectoryStub()
	e := newLimitsEnv(t, mirror.HostedOptions{Directory: dir})
	cases := []struct {
		user, password string
		want           int
	}{
		{"alice", limitsUsers["alice"], http.StatusOK},
		{"alice", "alice-directory-password", http.StatusUnauthorized},
		{"carol", "carol-password", http.StatusOK},
		{"BOB", "bob-directory-password", http.StatusUnauthorized},
	}
	for _, c := range cases {
		if got := e.do(t, nil, http.MethodGet, loginPath, nil, c.user, c.password); got.status != c.want {
			t.Errorf("%s's login with %s = %d, want %d", c.user, c.password, got.status, c.want)
		}
	}
	if n := dir.logins(); n != 2 {
		t.Errorf("the directory was asked %d times, want 2: for carol and BOB only", n)
	}
}

// Beside a directory, users must tell which users they hold.
func TestDirectoryNeedsUsersThatTellTheirUsers(t *testing.T) {
	t.Parallel()
	store, err := cache.Open(context.Background(), cache.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	hosted, err := store.Hosted(cache.HostedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = mirror.New(mirror.Options{Cache: store, Hosted: &mirror.HostedOptions{
		Store: hosted, Users: anyoneUsers{}, Directory: newDirectoryStub()}})
	if err == nil || !strings.Contains(err.Error(), "tell which users they hold") {
		t.Fatalf("mirror.New = %v, want users that cannot tell their users refused beside a directory", err)
	}
}

// anyoneUsers is an Authenticator that cannot tell which users it holds.
type anyoneUsers struct{}

func (anyoneUsers) Authenticate(user, password string) bool { return false }
