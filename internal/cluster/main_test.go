package cluster_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when a goroutine outlives them: a
// re-resolution loop, a test server or a forwarded body left open.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
