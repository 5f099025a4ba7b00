package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"time"
)

// binaries are the Docker programs the harness runs, found once per process.
type binaries struct {
	dockerd string
	cli     string
	// dockerdMajor is dockerd's major version, e.g. 20 for 20.10.24.
	dockerdMajor int
	// ip6tables says whether dockerd knows --ip6tables (added in 20.10).
	ip6tables bool
}

// findBinaries probes the environment once; every dockerd of a test run uses
// the same programs.
var findBinaries = sync.OnceValues(probeBinaries)

func probeBinaries() (binaries, error) {
	var b binaries
	var err error
	if b.dockerd, err = lookProgram("E2E_DOCKERD", "dockerd", "/usr/sbin/dockerd"); err != nil {
		return b, err
	}
	// Debian's docker.io puts its CLI in /usr/bin, matching its dockerd. Prefer
	// it to PATH: some images (this project's dev machines among them) carry
	// a newer static CLI in /usr/local/bin that shadows it. That one (28.x)
	// negotiates the API version down and passes the tests too, but a CLI
	// matching the daemon removes a variable when a test fails.
	if b.cli, err = lookProgram("E2E_DOCKER_CLI", "/usr/bin/docker", "docker"); err != nil {
		return b, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	version, err := exec.CommandContext(ctx, b.dockerd, "--version").Output()
	if err != nil {
		return b, fmt.Errorf("%s --version: %w", b.dockerd, err)
	}
	if b.dockerdMajor, err = majorVersion(version); err != nil {
		return b, fmt.Errorf("%s --version: %w", b.dockerd, err)
	}
	help, err := exec.CommandContext(ctx, b.dockerd, "--help").Output()
	if err != nil {
		return b, fmt.Errorf("%s --help: %w", b.dockerd, err)
	}
	b.ip6tables = bytes.Contains(help, []byte("--ip6tables"))
	return b, nil
}

// lookProgram returns $envVar if set, else the first candidate that is an
// executable path or a program on PATH.
func lookProgram(envVar string, candidates ...string) (string, error) {
	if p := os.Getenv(envVar); p != "" {
		return p, nil
	}
	for _, c := range candidates {
		if p, err := exec.LookPath(c); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("none of %v found (set %s, or run scripts/install-deps.sh)", candidates, envVar)
}

var versionPattern = regexp.MustCompile(`version v?(\d+)\.`)

// majorVersion reads the major version from `dockerd --version` output such
// as "Docker version 20.10.24+dfsg1, build 5d6db84".
func majorVersion(out []byte) (int, error) {
	m := versionPattern.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no version in %q", out)
	}
	return strconv.Atoi(string(m[1]))
}
