#!/usr/bin/env bash
# install-cosign.sh: install the pinned cosign for the signature tests
# (`make cosign`) into $(go env GOPATH)/bin, if that version is not there
# yet, by building it from the Go module proxy. Idempotent. The first build
# takes several minutes of CPU (cosign has a few hundred dependencies);
# later runs of `make test` find it installed.
set -euo pipefail

version=v2.6.5
bin="$(go env GOPATH)/bin/cosign"

if [[ -x $bin ]] && "$bin" version 2>/dev/null | grep -q "GitVersion: *${version}\$"; then
	echo "install-cosign: cosign ${version} already installed at ${bin}"
	exit 0
fi
echo "install-cosign: building cosign ${version} (several minutes the first time)"
GOFLAGS= GOBIN="$(dirname "$bin")" go install "github.com/sigstore/cosign/v2/cmd/cosign@${version}"
"$bin" version | grep GitVersion
