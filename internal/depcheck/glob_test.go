package depcheck

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// globDialect is the one package that may call path.Match or
// filepath.Match: every pattern over repository names or tags goes through
// it, so that `**` means the same in every setting.
const globDialect = "internal/repoglob"

// TestOneGlobDialect finds every call of path.Match or filepath.Match
// outside internal/repoglob, tests included.
func TestOneGlobDialect(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(root, func(file string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, file)
		if d.IsDir() {
			if rel == globDialect || strings.HasPrefix(d.Name(), ".") && rel != "." {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(file, ".go") {
			return nil
		}
		for _, at := range matchCalls(t, file) {
			t.Errorf("%s:%d calls %s: use internal/repoglob, the project's one glob dialect", rel, at.line, at.call)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

type matchCall struct {
	line int
	call string
}

// matchCalls lists the calls of Match on the packages path and
// path/filepath in file, under whatever names the file imports them.
func matchCalls(t *testing.T, file string) []matchCall {
	t.Helper()
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, file, src, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	globbers := map[string]string{}
	for _, imp := range f.Imports {
		p := strings.Trim(imp.Path.Value, `"`)
		if p != "path" && p != "path/filepath" {
			continue
		}
		name := filepath.Base(p)
		if imp.Name != nil {
			name = imp.Name.Name
		}
		globbers[name] = p
	}
	var calls []matchCall
	ast.Inspect(f, func(n ast.Node) bool {
		sel, ok := n.(*ast.SelectorExpr)
		if !ok || sel.Sel.Name != "Match" {
			return true
		}
		if pkg, ok := sel.X.(*ast.Ident); ok && globbers[pkg.Name] != "" {
			calls = append(calls, matchCall{fset.Position(sel.Pos()).Line, globbers[pkg.Name] + ".Match"})
		}
		return true
	})
	return calls
}
