//go:build e2e

package e2e_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/regmirror/regmirror/scripts/e2e"
)

// TestMain refuses to run rather than skip outside the intended sandbox:
// a skipped e2e suite would let CI pass without proving anything.
func TestMain(m *testing.M) {
	if err := e2e.Preflight(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(2)
	}
	// Which clients the run proves, for its log (docs/clients.md names them).
	clients, err := e2e.Clients(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(2)
	}
	for _, c := range clients {
		fmt.Printf("e2e: %s %s (%s)\n", c.Name, c.Version, c.Reported)
	}
	os.Exit(m.Run())
}
