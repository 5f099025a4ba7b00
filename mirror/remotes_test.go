package mirror

import (
	"errors"
	"fmt"
	"testing"
)

// idleUpstream is an Upstream that is never called; it records being closed.
type idleUpstream struct {
	Upstream
	closed *[]string
	host   string
}

func (u idleUpstream) Close() { *u.closed = append(*u.closed, u.host) }

// The mirror keeps the most recently used remotes that clients named, and
// releases the others.
func TestDynamicRemotesKeepsRecentlyUsed(t *testing.T) {
	t.Parallel()
	var made, closed []string
	create := func(host string) (Remote, error) {
		if host == "refused.example" {
			return Remote{}, errors.New("refused")
		}
		made = append(made, host)
		return Remote{Host: host, Upstream: idleUpstream{closed: &closed, host: host}}, nil
	}
	m, err := newMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	d := newDynamicRemotes(create, m, 2)
	get := func(host string) *Remote {
		t.Helper()
		r, err := d.get(host)
		if err != nil {
			t.Fatalf("get(%s): %v", host, err)
		}
		return r
	}
	a := get("a.example")
	get("b.example")
	if again := get("a.example"); again != a {
		t.Fatal("a second lookup made a new remote")
	}
	get("c.example") // evicts b, the least recently used
	get("a.example")
	get("b.example") // made again; evicts c
	if want := "[a.example b.example c.example b.example]"; fmt.Sprint(made) != want {
		t.Fatalf("made %v, want %s", made, want)
	}
	if want := "[b.example c.example]"; fmt.Sprint(closed) != want {
		t.Fatalf("closed %v, want %s", closed, want)
	}
	if _, err := d.get("refused.example"); err == nil {
		t.Fatal("a refused host was served")
	}
	if len(d.byHost) != 2 {
		t.Fatalf("%d remotes kept, want 2", len(d.byHost))
	}
}

func TestDynamicRemoteMustMatchHost(t *testing.T) {
	t.Parallel()
	m, _ := newMetrics(nil)
	d := newDynamicRemotes(func(string) (Remote, error) {
		return Remote{Host: "elsewhere.example", Upstream: idleUpstream{}}, nil
	}, m, 2)
	if _, err := d.get("asked.example"); err == nil {
		t.Fatal("a remote for another host was accepted")
	}
}
