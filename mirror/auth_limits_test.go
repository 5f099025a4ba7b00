package mirror_test

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/mirror"
)

// A login for a user who does not exist costs a bcrypt comparison of the
// users' cost, exactly like a wrong password of one who does, so neither
// the answer nor the work tells which user names exist.
func TestLoginOfUnknownUserCostsABcryptComparison(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, user string }{
		{"unknown user", "mallory"},
		{"known user, wrong password", "alice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			users := parseLimitsUsers(t)
			var mu sync.Mutex
			var costs []int
			mirror.SetHtpasswdCompare(users, func(hash, password []byte) error {
				cost, err := bcrypt.Cost(hash)
				if err != nil {
					t.Errorf("compared a password against %q, not a bcrypt hash", hash)
				}
				mu.Lock()
				costs = append(costs, cost)
				mu.Unlock()
				return bcrypt.CompareHashAndPassword(hash, password)
			})
			e := newLimitsEnv(t, mirror.HostedOptions{Users: users})

			got := e.do(t, nil, http.MethodGet, loginPath, nil, tc.user, "wrong-password")
			if got.status != http.StatusUnauthorized {
				t.Fatalf("login as %s with a wrong password = %d, want 401", tc.user, got.status)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(costs) != 1 || costs[0] != limitsUsersCost {
				t.Fatalf("login as %s made bcrypt comparisons of costs %v; want one of cost %d, as for every user",
					tc.user, costs, limitsUsersCost)
			}
		})
	}
}

// A client that keeps guessing passwords is stopped: after its failed
// logins are used up its next login gets 429 with Retry-After, on the
// token endpoint and on push routes, even with the right password, until
// the window refills. The same client's anonymous pulls, also with wrong
// credentials, are served as before: never 401, never 429.
func TestFailedLoginsFromOneAddressAreLimitedButPullsAreServed(t *testing.T) {
	t.Parallel()
	e := newLimitsEnv(t, mirror.HostedOptions{})
	img, err := e.hub.PushImage("library/busybox", "1", registrytest.ImageOptions{Layers: 1})
	if err != nil {
		t.Fatal(err)
	}
	guesser := e.from("127.0.0.2")
	for i := range mirror.DefaultMaxFailedLoginsPerClient {
		got := e.do(t, guesser, http.MethodGet, loginPath, nil, "alice", "guess-"+strconv.Itoa(i))
		if got.status != http.StatusUnauthorized {
			t.Fatalf("failed login %d = %d, want 401", i+1, got.status)
		}
	}
	checks := []struct{ name, method, path, password string }{
		{"another guess", http.MethodGet, loginPath, "one-more-guess"},
		{"the right password", http.MethodGet, loginPath, limitsUsers["alice"]},
		{"a push", http.MethodPost, "/v2/team/app/blobs/uploads/", "push-guess"},
	}
	for _, c := range checks {
		got := e.do(t, guesser, c.method, c.path, nil, "alice", c.password)
		if got.status != http.StatusTooManyRequests || got.errorCode() != "TOOMANYREQUESTS" || got.header.Get("Retry-After") == "" {
			t.Fatalf("%s after %d failed logins = %d %s (Retry-After %q), want 429 TOOMANYREQUESTS with Retry-After",
				c.name, mirror.DefaultMaxFailedLoginsPerClient, got.status, got.errorCode(), got.header.Get("Retry-After"))
		}
	}

	pulls := []struct{ name, path string }{
		{"pull token", pullTokenPath},
		{"manifest", "/v2/library/busybox/manifests/1"},
		{"blob", "/v2/library/busybox/blobs/" + img.Layers[0].Digest.String()},
	}
	for _, p := range pulls {
		if got := e.do(t, guesser, http.MethodGet, p.path, nil, "alice", "still-guessing"); got.status != http.StatusOK {
			t.Errorf("%s pulled by the limited client with wrong credentials = %d %s, want 200", p.name, got.status, got.body)
		}
	}
	if got := e.do(t, e.from("127.0.0.3"), http.MethodGet, loginPath, nil, "bob", limitsUsers["bob"]); got.status != http.StatusOK {
		t.Errorf("bob's login from another address = %d, want 200", got.status)
	}

	e.clock.Advance(mirror.DefaultFailedLoginWindow)
	if got := e.do(t, guesser, http.MethodGet, loginPath, nil, "alice", limitsUsers["alice"]); got.status != http.StatusOK {
		t.Errorf("alice's login once the window refilled = %d, want 200", got.status)
	}
}

// Guessing one user's password from many addresses, each below the
// per-address limit, locks that user's logins; other users log in.
func TestFailedLoginsForOneUserFromManyAddressesAreLimited(t *testing.T) {
	t.Parallel()
	e := newLimitsEnv(t, mirror.HostedOptions{})
	addr := func(i int) string { return fmt.Sprintf("127.0.%d.%d", 1+i/200, 10+i%200) }
	for i := range mirror.DefaultMaxFailedLoginsPerUser {
		got := e.do(t, e.from(addr(i)), http.MethodGet, loginPath, nil, "alice", "guess-"+strconv.Itoa(i))
		if got.status != http.StatusUnauthorized {
			t.Fatalf("failed login %d = %d, want 401", i+1, got.status)
		}
	}
	fresh := e.from(addr(mirror.DefaultMaxFailedLoginsPerUser))
	if got := e.do(t, fresh, http.MethodGet, loginPath, nil, "alice", "guess-from-a-new-address"); got.status != http.StatusTooManyRequests {
		t.Fatalf("a guess for alice from a new address after %d failures = %d, want 429", mirror.DefaultMaxFailedLoginsPerUser, got.status)
	}
	if got := e.do(t, fresh, http.MethodGet, loginPath, nil, "bob", limitsUsers["bob"]); got.status != http.StatusOK {
		t.Errorf("bob's login = %d, want 200", got.status)
	}
}
