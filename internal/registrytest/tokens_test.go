package registrytest

import (
	"slices"
	"testing"
)

func TestIssuedTokensListsWhatTheTokenEndpointGave(t *testing.T) {
	t.Parallel()
	r := New(t, Options{Username: "u", Password: "p"})
	if got := r.IssuedTokens(); len(got) != 0 {
		t.Fatalf("IssuedTokens before any token request = %v", got)
	}
	anon, _ := fetchToken(t, r, "repository:library/node:pull", "", "")
	authed, _ := fetchToken(t, r, "repository:library/node:pull", "u", "p")
	want := []string{anon, authed}
	slices.Sort(want)
	if got := r.IssuedTokens(); !slices.Equal(got, want) {
		t.Fatalf("IssuedTokens = %v, want %v", got, want)
	}
	r.RevokeTokens()
	if got := r.IssuedTokens(); len(got) != 0 {
		t.Fatalf("IssuedTokens after RevokeTokens = %v", got)
	}
}
