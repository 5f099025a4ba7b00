#!/usr/bin/env bash
# conformance.sh: run the OCI distribution-spec conformance suite against
# regmirror's hosted repositories, with push, pull, content discovery and
# content management enabled and every default data type, sha512 content
# included, and print its summary. Exits non-zero when a test fails.
#
# The suite is built from the Go module cache into a temporary directory,
# so it never becomes a dependency of regmirror's module. Behind regmirror
# runs an empty in-memory registry (go-containerregistry's) as the Docker Hub
# upstream: every miss in a hosted repository really falls through to it,
# as it does in production, and comes back as a 404.
#
# REGMIRROR_BIN:       the daemon under test (default: build bin/regmirror)
# CONFORMANCE_VERSION: the suite's module version
# CONFORMANCE_KEEP:    a directory to copy the suite's reports into
# OCI_VERSION:         the spec version tested (default "dev": 1.1 plus upload
#                      cancel, tag parameters and required digest headers)
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
module=github.com/opencontainers/distribution-spec/conformance
version=${CONFORMANCE_VERSION:-v0.0.0-20260831232431-97274622c111}

work=$(mktemp -d)
pids=()
cleanup() {
	local status=$?
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	if [[ $status -ne 0 && -f $work/regmirror.log ]]; then
		echo "--- regmirror log (last 60 lines) ---" >&2
		tail -n 60 "$work/regmirror.log" >&2
	fi
	rm -rf "$work"
	exit "$status"
}
trap cleanup EXIT

# wait_for_line FILE PATTERN: print the first line of FILE matching PATTERN,
# waiting up to 30s for it to appear.
wait_for_line() {
	local line
	for _ in $(seq 300); do
		if line=$(grep -m1 -E "$2" "$1" 2>/dev/null); then
			echo "$line"
			return 0
		fi
		sleep 0.1
	done
	echo "conformance: timed out waiting for /$2/ in $1" >&2
	cat "$1" >&2
	return 1
}

echo "conformance: building the suite ($module@$version)"
dir=$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "$module@$version" |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[[ -d $dir ]] || { echo "conformance: go mod download gave no directory" >&2; exit 1; }
(cd "$dir" && go build -o "$work/conformance" .)
go build -o "$work/upstream" github.com/google/go-containerregistry/cmd/registry
if [[ -z ${REGMIRROR_BIN:-} ]]; then
	CGO_ENABLED=0 go build -trimpath -o "$work/regmirror" ./cmd/regmirror
	REGMIRROR_BIN=$work/regmirror
fi

"$work/upstream" -port 0 >"$work/upstream.log" 2>&1 &
pids+=($!)
upstream_port=$(wait_for_line "$work/upstream.log" 'serving on port [0-9]+' | grep -oE '[0-9]+$')

user=conformance
password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
printf '%s\n' "$password" | "$REGMIRROR_BIN" htpasswd "$user" >"$work/htpasswd"
cat >"$work/config.yaml" <<EOF
listen: 127.0.0.1:0
data_dir: $work/data
upstreams:
  - host: docker.io
    url: http://127.0.0.1:$upstream_port
hosted:
  htpasswd: $work/htpasswd
  repositories: ["conformance/*"]
  delete: true
EOF
mkdir "$work/docker-config" # no ambient docker credentials for the upstream
DOCKER_CONFIG=$work/docker-config "$REGMIRROR_BIN" serve --config "$work/config.yaml" \
	>"$work/regmirror.log" 2>&1 &
pids+=($!)
addr=$(wait_for_line "$work/regmirror.log" 'regmirror listening' | grep -oE 'addr=[^ ]+' | cut -d= -f2)

echo "conformance: regmirror at $addr, upstream at 127.0.0.1:$upstream_port"
mkdir "$work/results"
status=0
(
	cd "$work"
	export OCI_VERSION=${OCI_VERSION:-dev} OCI_REGISTRY=$addr OCI_TLS=disabled \
		OCI_REPO1=conformance/repo1 OCI_REPO2=conformance/repo2 \
		OCI_USERNAME=$user OCI_PASSWORD=$password \
		OCI_API_PULL=true OCI_API_PUSH=true \
		OCI_API_TAGS_LIST=true OCI_API_REFERRER=true \
		OCI_API_TAGS_DELETE=true OCI_API_MANIFESTS_DELETE=true OCI_API_BLOBS_DELETE=true \
		OCI_API_BLOBS_UPLOAD_CANCEL=true \
		OCI_DATA_SHA512=true \
		OCI_RESULTS_DIR=$work/results
	./conformance >"$work/report.txt" 2>"$work/conformance.err"
) || status=$?

# The report starts with every test's errors and ends with the summary.
sed -n '/^OCI Conformance Result/,$p' "$work/report.txt"
if [[ $status -ne 0 ]]; then
	sed -n '1,/^Configuration:/p' "$work/report.txt" | head -n 200
	cat "$work/conformance.err" >&2
fi
if [[ -n ${CONFORMANCE_KEEP:-} ]]; then
	mkdir -p "$CONFORMANCE_KEEP"
	cp -r "$work/results/." "$work/report.txt" "$CONFORMANCE_KEEP/"
fi
echo "conformance: exit $status"
exit "$status"
