package cache

import (
	"os"
	"path/filepath"
	"testing"
)

// A clean Close stamps the index's tables in <dir>/index.tables, where
// every version has kept the stamp, so that the next start need not read
// the index in full; Open takes the stamp away again (see badgerindex).
func TestCleanCloseStampsTheIndex(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fillIndex(t, dir)
	stamp := filepath.Join(dir, "index.tables")
	if _, err := os.Stat(stamp); err != nil {
		t.Fatalf("no stamp after a clean close: %v", err)
	}
	openStore(t, Options{Dir: dir})
	if _, err := os.Stat(stamp); !os.IsNotExist(err) {
		t.Errorf("the stamp outlives Open (a crash now would leave it behind): %v", err)
	}
}
