package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
)

// Client is one client program the suite drives, with the version it
// reports.
type Client struct {
	// Name is how docs/clients.md names it: dockerd, containerd, podman.
	Name string
	// Version is the upstream release, without a distribution's suffix:
	// "20.10.24" for Debian's "20.10.24+dfsg1".
	Version string
	// Reported is the program's own --version line.
	Reported string
}

// releasePattern finds the release in a --version line: the first
// dotted triple.
var releasePattern = regexp.MustCompile(`\b(\d+\.\d+\.\d+)`)

// Clients runs dockerd, containerd and podman (the same programs the tests
// start, see doc.go for the variables that choose them) with --version.
func Clients(ctx context.Context) ([]Client, error) {
	programs := []struct{ name, envVar, onPath, fallback string }{
		{"dockerd", "E2E_DOCKERD", "dockerd", "/usr/sbin/dockerd"},
		{"containerd", "E2E_CONTAINERD", "containerd", "/usr/bin/containerd"},
		{"podman", "E2E_PODMAN", "podman", "/usr/bin/podman"},
	}
	var clients []Client
	for _, p := range programs {
		bin, err := lookProgram(p.envVar, p.onPath, p.fallback)
		if err != nil {
			return nil, err
		}
		out, err := exec.CommandContext(ctx, bin, "--version").Output()
		if err != nil {
			return nil, fmt.Errorf("%s --version: %w", bin, err)
		}
		reported := strings.TrimSpace(string(out))
		m := releasePattern.FindStringSubmatch(reported)
		if m == nil {
			return nil, fmt.Errorf("%s --version: no version in %q", bin, reported)
		}
		clients = append(clients, Client{Name: p.name, Version: m[1], Reported: reported})
	}
	return clients, nil
}
