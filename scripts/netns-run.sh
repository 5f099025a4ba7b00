#!/usr/bin/env bash
# netns-run.sh CMD [ARG...]: run CMD as root in fresh network, PID and mount
# namespaces whose only network interface is loopback (brought up here).
#
# Network: nothing but 127.0.0.1/::1 is reachable, so a dockerd that falls
# back from its mirror to Docker Hub fails at once instead of pulling from the
# internet, and a test server can only ever be reached locally.
# PID: when CMD exits, the kernel kills everything left in the namespace, so a
# crashed test cannot leak dockerd or containerd processes.
# Mount (private propagation): mounts dockerd makes stay inside and vanish
# with the namespace; /proc is remounted so it shows this namespace's PIDs.
#
# A shell stays PID 1 in the namespace and runs CMD as its child, so orphans
# (a managed containerd whose dockerd died) are reaped and CMD's exit status
# is returned unchanged.
set -euo pipefail

if [[ $# -eq 0 ]]; then
	echo "usage: $0 CMD [ARG...]" >&2
	exit 64
fi
if [[ $EUID -ne 0 ]]; then
	echo "$0: network namespaces need root; run as root (e.g. sudo $0 $*)" >&2
	exit 1
fi
for tool in unshare ip; do
	if ! command -v "$tool" >/dev/null; then
		echo "$0: $tool not found; run scripts/install-deps.sh" >&2
		exit 1
	fi
done

# --kill-child: if unshare itself is killed, take the namespace's init (and
# with it every process in the namespace) down too.
exec unshare --net --pid --mount --fork --kill-child --mount-proc -- \
	bash -c 'ip link set lo up && "$@"; exit $?' netns-run "$@"
