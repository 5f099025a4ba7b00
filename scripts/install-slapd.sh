#!/usr/bin/env bash
# install-slapd.sh: install Debian's OpenLDAP server and tools (slapd,
# ldap-utils) for the LDAP tests, if missing. The tests run their own slapd
# in a temporary directory on a loopback port; this script makes sure the
# package sets up no directory of its own (no debconf questions, no database
# made up from the host name) and starts no system slapd, now or at boot.
# Idempotent: does nothing when slapd and ldapadd are installed, and runs
# apt-get update only when apt does not know the packages yet.
set -euo pipefail

have() { command -v "$1" >/dev/null || [[ -x /usr/sbin/$1 ]]; }

if have slapd && have ldapadd; then
	echo "install-slapd: slapd and ldapadd already installed"
	exit 0
fi

sudo=()
if [[ $EUID -ne 0 ]]; then
	sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive

if ! apt-cache show slapd ldap-utils >/dev/null 2>&1; then
	"${sudo[@]}" apt-get update
fi
echo 'slapd slapd/no_configuration boolean true' | "${sudo[@]}" debconf-set-selections
# While installing, no package may start a service: policy-rc.d answering
# 101 ("action forbidden") is how Debian says so. One already in place
# (container images ship one) is left as it is.
policy=/usr/sbin/policy-rc.d
if [[ ! -e $policy ]]; then
	printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
	"${sudo[@]}" chmod 755 "$policy"
	trap '"${sudo[@]}" rm -f "$policy"' EXIT
fi
echo "install-slapd: installing slapd ldap-utils"
"${sudo[@]}" apt-get install -y --no-install-recommends slapd ldap-utils
# Nor at boot: the system service is not used.
if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
	"${sudo[@]}" systemctl disable --now slapd >/dev/null 2>&1 || true
else
	"${sudo[@]}" update-rc.d slapd disable >/dev/null 2>&1 || true
fi
