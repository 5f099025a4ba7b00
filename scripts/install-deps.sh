#!/usr/bin/env bash
# install-deps.sh: install what the e2e tests run, if missing: dockerd with
# its containerd and runc (Debian's docker.io), ctr (containerd), podman,
# unshare (util-linux) and ip (iproute2); nginx, the reverse proxy of the
# access log test and of the cluster's end-to-end tests, and promtool
# (Debian's prometheus), which checks the alerting rules. Idempotent:
# installs nothing when all are present, and runs apt-get update at most
# once, only when a package is not yet known to apt.
# slapd and ldapadd, for the LDAP tests, come from install-slapd.sh.
# versitygw, the S3 server of the cache/s3blobs tests and the shared bucket
# of the cluster's end-to-end tests, is built from the Go module proxy into
# $(go env GOPATH)/bin (about a minute the first time).
set -euo pipefail

"$(dirname "$0")/install-slapd.sh"

versitygw_version=v1.8.0
versitygw="$(go env GOPATH)/bin/versitygw"
if [[ -x $versitygw ]]; then
	echo "install-deps: versitygw already installed at ${versitygw}"
else
	echo "install-deps: building versitygw ${versitygw_version} (about a minute)"
	GOFLAGS= GOBIN="$(dirname "$versitygw")" go install "github.com/versity/versitygw/cmd/versitygw@${versitygw_version}"
fi

have() { command -v "$1" >/dev/null || [[ -x /usr/sbin/$1 || -x /sbin/$1 ]]; }

missing=()
have dockerd || missing+=(docker.io)
have ctr || missing+=(containerd)
have podman || missing+=(podman)
have unshare || missing+=(util-linux)
have ip || missing+=(iproute2)
have nginx || missing+=(nginx)
have systemd-analyze || missing+=(systemd) # checks scripts/regmirror.service
# Without its recommends: prometheus-node-exporter is not needed.
lean=()
have promtool || lean+=(prometheus)
if [[ ${#missing[@]} -eq 0 && ${#lean[@]} -eq 0 ]]; then
	echo "install-deps: dockerd, ctr, podman, unshare, ip, nginx, systemd-analyze and promtool already installed"
	exit 0
fi

sudo=()
if [[ $EUID -ne 0 ]]; then
	sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive

# apt-cache knows a package only after an update has fetched the lists.
for pkg in "${missing[@]}" "${lean[@]}"; do
	if ! apt-cache show "$pkg" >/dev/null 2>&1; then
		"${sudo[@]}" apt-get update
		break
	fi
done
echo "install-deps: installing ${missing[*]} ${lean[*]}"
if [[ ${#missing[@]} -gt 0 ]]; then
	"${sudo[@]}" apt-get install -y "${missing[@]}"
fi
if [[ ${#lean[@]} -gt 0 ]]; then
	"${sudo[@]}" apt-get install -y --no-install-recommends "${lean[@]}"
fi
