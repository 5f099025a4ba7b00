package cluster

// Owner returns the member that owns key (a digest, say) by rendezvous
// hashing: each member scores the key and the highest score wins. Every
// replica with the same members picks the same owner, and when a member
// leaves only the keys it owned move, each to the runner-up.
func (p *Peers) Owner(key string) Peer { return owner(*p.members.Load(), key) }

// owner is rendezvous hashing over members, which must not be empty. Ties,
// as unlikely as they are, go to the smaller URL so that the result does
// not depend on the order of members.
func owner(members []Peer, key string) Peer {
	best, bestScore := members[0], score(members[0], key)
	for _, m := range members[1:] {
		s := score(m, key)
		if s > bestScore || s == bestScore && m.URL < best.URL {
			best, bestScore = m, s
		}
	}
	return best
}

// score is the weight of key on peer: FNV-1a 64 of the peer's URL, a
// separator and the key, then a 64-bit finalizer, because FNV alone
// spreads keys that differ in their last bytes poorly over the high bits.
// It is stable across processes and versions: changing it reshuffles
// every owner of a running cluster.
func score(peer Peer, key string) uint64 {
	h := fnv1a(fnvOffset, peer.URL)
	h = fnv1a(h, "\x00")
	return mix64(fnv1a(h, key))
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func fnv1a(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

// mix64 is the finalizer of MurmurHash3 (fmix64).
func mix64(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}
