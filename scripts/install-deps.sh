#!/usr/bin/env bash
# install-deps.sh: install what the e2e tests run, if missing: dockerd with
# its containerd and runc (Debian's docker.io), ctr (containerd), podman,
# unshare (util-linux) and ip (iproute2). Idempotent: installs nothing when all are present, and runs
# apt-get update at most once, only when a package is not yet known to apt.
# slapd and ldapadd, for the LDAP tests, come from install-slapd.sh.
set -euo pipefail

"$(dirname "$0")/install-slapd.sh"

have() { command -v "$1" >/dev/null || [[ -x /usr/sbin/$1 || -x /sbin/$1 ]]; }

missing=()
have dockerd || missing+=(docker.io)
have ctr || missing+=(containerd)
have podman || missing+=(podman)
have unshare || missing+=(util-linux)
have ip || missing+=(iproute2)
if [[ ${#missing[@]} -eq 0 ]]; then
	echo "install-deps: dockerd, ctr, podman, unshare and ip already installed"
	exit 0
fi

sudo=()
if [[ $EUID -ne 0 ]]; then
	sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive

# apt-cache knows a package only after an update has fetched the lists.
for pkg in "${missing[@]}"; do
	if ! apt-cache show "$pkg" >/dev/null 2>&1; then
		"${sudo[@]}" apt-get update
		break
	fi
done
echo "install-deps: installing ${missing[*]}"
"${sudo[@]}" apt-get install -y "${missing[@]}"
