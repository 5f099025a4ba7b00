#!/usr/bin/env bash
# e2e.sh [TEST-BINARY FLAGS...]: build the end-to-end tests (and the regmirror
# daemon, once ./cmd/regmirror exists) and run them as root inside a
# loopback-only network namespace. Extra arguments go to the test binary,
# e.g. scripts/e2e.sh -test.run 'TestDockerPulls'.
#
# REGMIRROR_BIN: use this daemon binary instead of building bin/regmirror.
# E2E_TIMEOUT:   the test binary's -test.timeout (default 10m).
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD

if [[ $EUID -ne 0 ]]; then
	echo "e2e: dockerd and network namespaces need root; run as root" >&2
	exit 1
fi
scripts/install-deps.sh

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1fs", b - a }'; }

build_start=$(now)
if [[ -n ${REGMIRROR_BIN:-} ]]; then
	echo "e2e: using REGMIRROR_BIN=$REGMIRROR_BIN"
elif compgen -G 'cmd/regmirror/*.go' >/dev/null; then
	CGO_ENABLED=0 go build -trimpath -o bin/regmirror ./cmd/regmirror
	export REGMIRROR_BIN=$root/bin/regmirror
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
go test -c -tags e2e -o "$out/e2e.test" ./scripts/e2e
build_end=$(now)

status=0
scripts/netns-run.sh "$out/e2e.test" -test.v -test.timeout "${E2E_TIMEOUT:-10m}" "$@" || status=$?
test_end=$(now)

echo "e2e: build $(elapsed "$build_start" "$build_end"), tests $(elapsed "$build_end" "$test_end") (exit $status)"
exit "$status"
