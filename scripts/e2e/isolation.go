package e2e

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
)

// Preflight reports why this process must not run the e2e tests; call it
// from TestMain and fail (not skip) on error, so a misconfigured CI run
// cannot pass by running nothing.
//
// It requires root (dockerd needs it) and a network namespace in which
// loopback is the only interface up: dockerd falls back from a failing
// mirror to registry-1.docker.io, and there that fallback must fail at once
// instead of quietly pulling from the internet and hiding a mirror bug.
// scripts/netns-run.sh provides such a namespace. E2E_ALLOW_NETWORK=1 waives
// the network check for a deliberate run outside one.
func Preflight() error {
	if os.Geteuid() != 0 {
		return errors.New("the e2e tests start dockerd and need root; run them as root via scripts/e2e.sh")
	}
	if _, err := findBinaries(); err != nil {
		return err
	}
	if os.Getenv("E2E_ALLOW_NETWORK") == "1" {
		return nil
	}
	return checkLoopbackOnly()
}

// checkLoopbackOnly fails unless loopback is up and no other interface is.
func checkLoopbackOnly() error {
	ifaces, err := net.Interfaces()
	if err != nil {
		return fmt.Errorf("list network interfaces: %w", err)
	}
	var external []string
	loopbackUp := false
	for _, iface := range ifaces {
		switch up := iface.Flags&net.FlagUp != 0; {
		case iface.Flags&net.FlagLoopback != 0:
			loopbackUp = loopbackUp || up
		case up:
			external = append(external, iface.Name)
		}
	}
	if len(external) > 0 {
		return fmt.Errorf("non-loopback network interfaces are up (%s): run the e2e tests inside scripts/netns-run.sh "+
			"so a dockerd falling back to Docker Hub cannot reach the network (E2E_ALLOW_NETWORK=1 overrides)",
			strings.Join(external, ", "))
	}
	if !loopbackUp {
		return errors.New("loopback is down: the test registry and mirror listen on 127.0.0.1 (scripts/netns-run.sh brings lo up)")
	}
	return nil
}
