package depcheck

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// badgerIndex is the one package that may import Badger: the cache and
// everything else reach the index rows through cache/index.
const badgerIndex = "cache/index/badgerindex"

// TestOnlyBadgerIndexImportsBadger reads the imports of every Go file,
// tests and files behind build tags included.
func TestOnlyBadgerIndexImportsBadger(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	files := 0
	err = filepath.WalkDir(root, func(file string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, file)
		if d.IsDir() {
			if rel == badgerIndex || strings.HasPrefix(d.Name(), ".") && rel != "." {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(file, ".go") {
			return nil
		}
		files++
		for _, imp := range importsOf(t, file) {
			if strings.HasPrefix(imp, "github.com/dgraph-io/badger") {
				t.Errorf("%s imports %s: only %s may", rel, imp, badgerIndex)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 100 {
		t.Fatalf("only %d Go files read: is the walk still at the module's root?", files)
	}
}

// importsOf lists the import paths of file.
func importsOf(t *testing.T, file string) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.ImportsOnly)
	if err != nil {
		t.Fatal(err)
	}
	paths := make([]string, 0, len(f.Imports))
	for _, imp := range f.Imports {
		path, err := strconv.Unquote(imp.Path.Value)
		if err != nil {
			t.Fatalf("%s: import %s: %v", file, imp.Path.Value, err)
		}
		paths = append(paths, path)
	}
	return paths
}
