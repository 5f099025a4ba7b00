# Every target is what CI runs; `make test` is the whole gate.
GO      ?= go
BIN     := bin/regmirror
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo devel)
LDFLAGS := -X main.version=$(VERSION)
# How long each fuzz target runs: `make test` runs a fixed number of inputs
# (a count, not a duration: go1.26's fuzz coordinator can report a spurious
# "context deadline exceeded" when a duration ends under load, go.dev/issue/75804);
# `make fuzz FUZZTIME=5m` explores longer.
FUZZ_SMOKE ?= 30000x
FUZZTIME ?= 2m

.PHONY: run build test unit root-tests fuzz-smoke fuzz stress conformance browser screenshot cosign e2e rules proxy-log bench lint clean

## run: the daemon on embedded defaults (:5000, data in ./data)
run: build
	./$(BIN) serve

## build: a static binary in bin/
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/regmirror

## test: lint, unit and integration tests with -race (a stress smoke run among them), root-only tests, fuzz smoke, OCI conformance, the status page in a headless browser, end-to-end with a real dockerd and containerd, the alerting rules, the access log behind nginx, cosign signing and verifying through the mirror
test: lint unit root-tests fuzz-smoke conformance browser e2e rules proxy-log cosign

# The LDAP tests run a real slapd: install-slapd.sh installs it if missing.
unit:
	scripts/install-deps.sh
	$(GO) test -race -count=1 ./...

## root-tests: tests that need root (a full disk on a small tmpfs); they fail, not skip, without it
root-tests:
	$(GO) test -race -count=1 -tags roottests -run '^TestDiskFullDuringDownload$$' ./cache

## stress: ten loops pulling and removing five images under a tight budget, eviction forced every second, for STRESS_DURATION (prints the numbers)
STRESS_DURATION ?= 8m
stress:
	REGMIRROR_STRESS_DURATION=$(STRESS_DURATION) $(GO) test -race -count=1 -tags stress -run '^TestStress$$' -timeout 20m -v ./cmd/regmirror

fuzz-smoke:
	$(MAKE) fuzz FUZZTIME=$(FUZZ_SMOKE)

## fuzz: every fuzz target for FUZZTIME (default 2m each; a count like 100000x also works)
fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzParseRequest$$' -fuzztime=$(FUZZTIME) ./internal/ociserver
	$(GO) test -run='^$$' -fuzz='^FuzzParseRange$$' -fuzztime=$(FUZZTIME) ./internal/ociserver
	$(GO) test -run='^$$' -fuzz='^FuzzCheckUpstreamManifest$$' -fuzztime=$(FUZZTIME) ./mirror

## conformance: the OCI distribution-spec conformance suite against the hosted repositories
conformance: build
	REGMIRROR_BIN=$(CURDIR)/$(BIN) scripts/conformance.sh

## browser: the status and browse pages rendered by a real headless Chromium (installed if missing) show the numbers and content of pulls
browser:
	scripts/install-chromium.sh
	$(GO) test -race -count=1 -tags browser -run '^(TestStatusPageInBrowser|TestBrowsePageInBrowser)$$' ./cmd/regmirror

## screenshot: refresh docs/status-page.png and docs/browse-page.png from the browser tests
screenshot:
	scripts/install-chromium.sh
	REGMIRROR_SCREENSHOT=$(CURDIR)/docs/status-page.png REGMIRROR_BROWSE_SCREENSHOT=$(CURDIR)/docs/browse-page.png \
		$(GO) test -count=1 -tags browser -run '^(TestStatusPageInBrowser|TestBrowsePageInBrowser)$$' ./cmd/regmirror

## cosign: images signed with a real cosign on the upstream verify through the mirror (.sig tags and OCI 1.1 referrers); builds cosign first if missing, which takes minutes, so `test` leaves it out
cosign:
	scripts/install-cosign.sh
	COSIGN_BIN=$$($(GO) env GOPATH)/bin/cosign $(GO) test -race -count=1 -tags cosign -run '^TestCosign' ./mirror

## e2e: pull through the mirror with a private dockerd and containerd in a loopback-only network namespace
e2e: build
	scripts/install-deps.sh
	REGMIRROR_BIN=$(CURDIR)/$(BIN) scripts/e2e.sh

## rules: promtool (Debian's prometheus, installed if missing) checks the alerting rules and runs their unit tests
rules:
	scripts/install-deps.sh
	promtool check rules deploy/prometheus/regmirror-rules.yaml
	promtool test rules deploy/prometheus/regmirror-rules.test.yaml

## proxy-log: behind a real nginx (installed if missing), the access log names the original client, the user and the request ID; three replicas in a cluster fetch each blob once
proxy-log:
	scripts/install-deps.sh
	$(GO) test -race -count=1 -tags nginx -run '^(TestAccessLogBehindNginx|TestClusterBehindNginx)' ./cmd/regmirror

## bench: throughput, coalescing and memory numbers (prints a report)
bench: build
	REGMIRROR_BIN=$(CURDIR)/$(BIN) scripts/bench.sh

lint:
	$(GO) vet ./...
	$(GO) vet -tags 'roottests stress nginx' ./cache ./cmd/regmirror
	$(GO) vet -tags cosign ./mirror
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi

clean:
	rm -rf bin
