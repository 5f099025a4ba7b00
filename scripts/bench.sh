#!/usr/bin/env bash
# bench.sh [BENCH FLAGS...]: performance numbers for regmirror. Runs the
# pull benchmark (scripts/bench: the real daemon against an in-process
# Docker-Hub-like upstream over loopback) and the packages' Go
# micro-benchmarks, and prints a report. Nothing here passes or fails on
# timings; the report prints the targets next to the numbers.
#
# REGMIRROR_BIN: the daemon under test (default: build bin/regmirror).
# BENCHTIME:     -benchtime of the micro-benchmarks (default 20x; the ones
#                that rebuild a large index per round always run once).
# MICRO=0:       skip the micro-benchmarks.
# SCALEOUT=0:    skip the scaleout section (one daemon vs a cluster of three
#                without and with a shared bucket on versitygw, which
#                scripts/install-deps.sh installs if missing; about four
#                minutes on a busy 2-CPU machine), which the pull benchmark
#                leaves out unless asked for; -sections, when given, says
#                what runs.
# Extra arguments go to the pull benchmark, e.g. -rounds 1 -size-mib 512
# (run `go run ./scripts/bench -h` for all).
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD

if [[ -z ${REGMIRROR_BIN:-} ]]; then
	CGO_ENABLED=0 go build -trimpath -o bin/regmirror ./cmd/regmirror
	export REGMIRROR_BIN=$root/bin/regmirror
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
go build -o "$out/bench" ./scripts/bench

sections=(-sections default,scaleout)
if [[ ${SCALEOUT:-1} == 0 ]]; then
	sections=()
fi
# The scaleout section runs when the default sections stand or when
# -sections names it (its value is the next argument or after the =).
scaleout=$((${#sections[@]} > 0))
for arg in "$@"; do
	if [[ $arg == -sections* || $arg == --sections* ]]; then
		sections=()
		scaleout=0
	fi
	if [[ $arg == *scaleout* ]]; then
		scaleout=1
	fi
done
versitygw=()
if ((scaleout)); then
	program="$(go env GOPATH)/bin/versitygw"
	if [[ ! -x $program ]] && ! program=$(command -v versitygw); then
		scripts/install-deps.sh
		program="$(go env GOPATH)/bin/versitygw"
	fi
	if [[ ! -x $program ]]; then
		echo "bench.sh: versitygw, the S3 server of the scaleout section, is not installed and scripts/install-deps.sh" >&2
		echo "did not install it; run it, or skip the section with SCALEOUT=0" >&2
		exit 1
	fi
	versitygw=(-versitygw "$program")
fi
"$out/bench" "${sections[@]}" "${versitygw[@]}" "$@"

if [[ ${MICRO:-1} == 0 ]]; then
	exit 0
fi
# Benchmarks named *100k set up 100,000 entries per round: one round is enough.
echo
echo "micro-benchmarks (go test -bench, -benchtime ${BENCHTIME:-20x}; *100k: 1x)"
go test -run '^$' -bench . -skip '100k' -benchmem -benchtime "${BENCHTIME:-20x}" ./cache/ ./eviction/
go test -run '^$' -bench '100k' -benchmem -benchtime 1x ./cache/ ./eviction/
# The inventory with 100,000 blobs in 10,000 repositories: the first catalog
# page and repository listing (a whole index read), the same again (the
# snapshot reused), and an eviction pass to half the usage.
go test -run '^$' -bench 'BenchmarkInventory100k' -benchtime 1x ./cmd/regmirror/
