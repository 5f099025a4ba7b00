package cluster_test

import (
	"fmt"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/internal/cluster"
)

const keyCount = 10_000

var peerURLs = []string{"http://10.0.0.1:5000", "http://10.0.0.2:5000", "http://10.0.0.3:5000", "http://10.0.0.4:5000"}

// keys are blob digests, what replicas ask the owner of.
func keys() []string {
	ks := make([]string, keyCount)
	for i := range ks {
		ks[i] = digest.FromBytes(fmt.Appendf(nil, "layer %d", i)).String()
	}
	return ks
}

// members is a cluster of the given peers as seen from the first.
func members(t *testing.T, urls ...string) *cluster.Peers {
	t.Helper()
	p, err := cluster.New(cluster.Config{Self: urls[0], URLs: urls[1:]})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestOwnerSpreadsKeysEvenly(t *testing.T) {
	t.Parallel()
	p := members(t, peerURLs[:3]...)
	owned := map[cluster.Peer]int{}
	for _, k := range keys() {
		owned[p.Owner(k)]++
	}
	if len(owned) != 3 {
		t.Fatalf("keys went to %d peers; want 3: %v", len(owned), owned)
	}
	for peer, n := range owned {
		if n < keyCount*25/100 || n > keyCount*42/100 {
			t.Errorf("%s owns %d of %d keys; want 25%% to 42%%", peer, n, keyCount)
		}
	}
}

// Every replica, whichever it is, picks the same owner for a key, and the
// owner does not depend on the order the members were listed in.
func TestOwnerIsTheSameOnEveryReplica(t *testing.T) {
	t.Parallel()
	views := []*cluster.Peers{
		members(t, peerURLs[0], peerURLs[1], peerURLs[2]),
		members(t, peerURLs[1], peerURLs[2], peerURLs[0]),
		members(t, peerURLs[2], peerURLs[0], peerURLs[1]),
	}
	for _, k := range keys() {
		want := views[0].Owner(k)
		for _, v := range views[1:] {
			if got := v.Owner(k); got != want {
				t.Fatalf("%s: %s says %s owns it, %s says %s", k, views[0].Self(), want, v.Self(), got)
			}
		}
	}
}

// When a peer leaves only the keys it owned move. Read the other way, when
// it joins, only the keys it takes move.
func TestOwnerMovesOnlyTheKeysOfWhoLeftOrJoined(t *testing.T) {
	t.Parallel()
	four := members(t, peerURLs...)
	three := members(t, peerURLs[:3]...)
	leaver := cluster.Peer{URL: peerURLs[3]}
	moved, ownedByLeaver := 0, 0
	for _, k := range keys() {
		before, after := four.Owner(k), three.Owner(k)
		if before == leaver {
			ownedByLeaver++
		}
		if before != after {
			moved++
			if before != leaver {
				t.Errorf("%s moved from %s to %s, but %s left", k, before, after, leaver)
			}
		}
	}
	if moved != ownedByLeaver || moved == 0 {
		t.Errorf("%d keys moved; the leaver owned %d", moved, ownedByLeaver)
	}
}

// The hash is part of the cluster's protocol: replicas of two versions
// must agree, so the owner of known keys must not change by accident. The
// owners below were computed apart from this code, by FNV-1a 64 of
// URL + "\x00" + key through MurmurHash3's fmix64.
func TestOwnerIsStable(t *testing.T) {
	t.Parallel()
	p := members(t, peerURLs[:3]...)
	want := []string{peerURLs[2], peerURLs[2], peerURLs[1], peerURLs[1], peerURLs[0], peerURLs[2]}
	for i, w := range want {
		key := digest.FromString(fmt.Sprint(i)).String()
		if got := p.Owner(key); got.URL != w {
			t.Errorf("owner of %s = %s; want %s", key, got, w)
		}
	}
}
