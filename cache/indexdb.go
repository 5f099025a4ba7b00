package cache

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/regmirror/regmirror/cache/index"
	"github.com/regmirror/regmirror/cache/index/badgerindex"
)

// openIndex opens the index rows in dataDir/index: Badger, which verifies
// the index's files as it opens them (see badgerindex.Open). A failure
// tells the operator how to recover. wrap, when set, wraps what it opened.
func openIndex(ctx context.Context, dataDir string, log *slog.Logger, wrap func(index.DB) index.DB) (index.DB, error) {
	dir := filepath.Join(dataDir, "index")
	db, err := badgerindex.Open(ctx, dir, badgerindex.Options{Logger: log})
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, damagedIndexHint(dir))
	}
	if wrap != nil {
		return wrap(db), nil
	}
	return db, nil
}

// damagedIndexHint tells an operator how to recover from a damaged index.
func damagedIndexHint(dir string) string {
	return "if the index is damaged, move " + dir + " aside: the cache then starts with an empty index rebuilt " +
		"from the blob files; cached manifests and tags are fetched again, hosted repositories lose their manifests and tags"
}
