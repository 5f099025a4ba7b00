#!/usr/bin/env bash
# install-chromium.sh: install Debian's chromium for the status page's browser
# test, if it is missing. Idempotent: does nothing when chromium is on PATH,
# and runs apt-get update only when apt does not know the package yet.
set -euo pipefail

if command -v chromium >/dev/null; then
	echo "install-chromium: $(chromium --version 2>/dev/null || echo chromium) already installed"
	exit 0
fi

sudo=()
if [[ $EUID -ne 0 ]]; then
	sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive

if ! apt-cache show chromium >/dev/null 2>&1; then
	"${sudo[@]}" apt-get update
fi
echo "install-chromium: installing chromium"
# Fonts make the screenshot legible; the headless shell needs no X server.
"${sudo[@]}" apt-get install -y --no-install-recommends chromium fonts-dejavu-core
