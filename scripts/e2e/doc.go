// Package e2e drives a real, private dockerd or containerd against a
// registry mirror.
//
// The harness (StartDockerd, Dockerd.Docker) starts a throw-away dockerd
// with its own data root, exec root, socket and managed containerd, and
// points it at a mirror through the repository's daemon.json.example, so the
// configuration users copy is the one the tests prove. StartContainerd
// starts a containerd with its own root, state and socket, and
// WriteHostsDir renders the documented hosts.toml files
// (docs/examples/containerd/certs.d) for `ctr images pull --hosts-dir`.
//
// Tests live behind the "e2e" build tag because they need root and a
// loopback-only network namespace; run them with scripts/e2e.sh, or by hand:
//
//	go test -c -tags e2e -o /tmp/e2e.test ./scripts/e2e
//	scripts/netns-run.sh /tmp/e2e.test -test.v
//
// Environment knobs, all optional:
//
//	E2E_DOCKERD        dockerd binary (default: dockerd on PATH, then /usr/sbin/dockerd)
//	E2E_DOCKER_CLI     docker CLI (default: /usr/bin/docker from the docker.io package, then PATH)
//	E2E_CONTAINERD     containerd binary (default: containerd on PATH, then /usr/bin/containerd)
//	E2E_CTR            ctr binary (default: ctr on PATH, then /usr/bin/ctr)
//	E2E_PODMAN         podman binary (default: podman on PATH, then /usr/bin/podman)
//	E2E_DAEMON_JSON    daemon.json template (default: daemon.json.example at the repo root)
//	E2E_ALLOW_NETWORK  set to 1 to run outside a loopback-only network namespace
//	E2E_KEEP           set to 1 to keep each dockerd's directory (data, log) after the test
package e2e
