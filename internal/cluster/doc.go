// Package cluster lets replicas of regmirror that share one bucket split
// the upstream fetches between them, so that the upstream registry sees one
// GET per blob however many replicas sit behind the load balancer.
//
// Peers is the membership: a static list of base URLs or a DNS name (a
// Kubernetes headless Service) re-resolved on an interval, always
// including this replica. Peers.Owner picks the replica that owns a key (a
// digest) by rendezvous hashing, so that a replica leaving moves only the
// keys it owned. A replica that misses a blob it does not own hands the
// request to the owner with Forwarder.Forward, which sends only GET and
// HEAD requests for blobs and manifests, only to members, signed with a
// shared secret (Authenticator.Sign) and marked as forwarded so that the
// owner never forwards them again. The owner checks the signature, the
// clock skew and the nonce with Authenticator.Verify.
//
// Hosted repositories have one owner each too: HostedProxy passes a
// client's request for one, whatever its method, to the owner as a reverse
// proxy with the client's own credentials, signed on a channel of its own
// whose signatures are no good as a trusted forward's. Node.GuardHosted
// verifies them: a hosted forward is served with the client's rights and
// never passed on again.
//
// The package imports nothing else of regmirror; the daemon wires it.
package cluster
