package badgerindex

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when a goroutine outlives them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// badger.Open starts these two before it reads the index, and when
		// the index is damaged it returns no DB to Close, so they run on
		// (badger v4.9.6, db.go). The tests of a damaged index see that. A
		// DB left open is still caught: its other goroutines (updateSize,
		// doWrites, flushMemtable, the compactors) are not ignored. They
		// are matched anywhere in the stack: when checked, either may be
		// inside a call of its own (a metrics read, a free).
		goleak.IgnoreAnyFunction("github.com/dgraph-io/badger/v4.(*DB).monitorCache"),
		goleak.IgnoreAnyFunction("github.com/dgraph-io/ristretto/v2/z.(*AllocatorPool).freeupAllocators"),
	)
}
