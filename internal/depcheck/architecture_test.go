package depcheck

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// archDoc describes the packages and the calls between them.
const archDoc = "../../docs/architecture.md"

// packagePaths maps the package names the page uses to their directories.
var packagePaths = map[string]string{
	"mirror": "mirror", "cache": "cache", "upstream": "upstream",
	"credentials": "credentials", "eviction": "eviction",
	"admin": "internal/admin", "statuspage": "internal/statuspage",
	"edge": "internal/edge", "repoglob": "internal/repoglob",
	"registryhost": "internal/registryhost", "notify": "internal/notify",
	"ldapauth": "internal/ldapauth", "promreg": "internal/promreg",
	"depcheck": "internal/depcheck", "blobstore": "cache/blobstore",
	"storagetest": "cache/storagetest", "ociserver": "internal/ociserver", "fill": "internal/fill", "bloblookup": "internal/bloblookup",
	"s3blobs": "cache/s3blobs", "s3lease": "cache/s3lease", "s3janitor": "cache/s3janitor", "bucket": "cache/bucket", "s3test": "internal/s3test",
	"cluster": "internal/cluster", "index": "cache/index",
	"badgerindex": "cache/index/badgerindex", "indextest": "cache/index/indextest",
}

// codeSpan is a `code` span of the page.
var codeSpan = regexp.MustCompile("`([^`]+)`")

// qualified is pkg.Name or pkg.Type.Method.
var qualified = regexp.MustCompile(`^([a-z][a-z0-9]*)\.([A-Za-z_][A-Za-z0-9_]*)(?:\.([A-Za-z_][A-Za-z0-9_]*))?$`)

// Every package path and every pkg.Name or pkg.Type.Method the page names
// exists, so the page cannot drift from the code unnoticed.
func TestArchitectureDocNamesExistingCode(t *testing.T) {
	t.Parallel()
	page, err := os.ReadFile(archDoc)
	if err != nil {
		t.Fatal(err)
	}
	decls := map[string]map[string]bool{}
	checked := 0
	for _, m := range codeSpan.FindAllStringSubmatch(string(page), -1) {
		span := m[1]
		if strings.HasPrefix(span, "internal/") || strings.HasPrefix(span, "cmd/") || strings.HasPrefix(span, "cache/") ||
			strings.HasPrefix(span, "mirror/") {
			if _, err := os.Stat(filepath.Join("../..", span)); err != nil {
				t.Errorf("the page names package %s, which does not exist", span)
			}
			checked++
			continue
		}
		q := qualified.FindStringSubmatch(span)
		if q == nil {
			continue
		}
		dir, ok := packagePaths[q[1]]
		if !ok {
			continue // a config key such as hosted.repositories
		}
		if decls[dir] == nil {
			decls[dir] = declaredNames(t, filepath.Join("../..", dir))
		}
		name := q[2]
		if q[3] != "" {
			name += "." + q[3]
		}
		if !decls[dir][name] {
			t.Errorf("the page names %s, which package %s does not declare", span, dir)
		}
		checked++
	}
	if checked < 40 {
		t.Fatalf("only %d names checked: is the page still there, and still naming the code?", checked)
	}
}

// declaredNames lists the top-level names of the package in dir (tests
// included), its
// methods as Type.Method and its interfaces' methods the same way.
func declaredNames(t *testing.T, dir string) map[string]bool {
	t.Helper()
	// Test files count: the page names the tests that keep it honest.
	pkgs, err := parser.ParseDir(token.NewFileSet(), dir, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, pkg := range pkgs {
		for _, f := range pkg.Files {
			for _, d := range f.Decls {
				addDecl(names, d)
			}
		}
	}
	return names
}

func addDecl(names map[string]bool, d ast.Decl) {
	switch d := d.(type) {
	case *ast.FuncDecl:
		if d.Recv == nil {
			names[d.Name.Name] = true
			return
		}
		names[receiverName(d.Recv.List[0].Type)+"."+d.Name.Name] = true
	case *ast.GenDecl:
		for _, s := range d.Specs {
			switch s := s.(type) {
			case *ast.TypeSpec:
				names[s.Name.Name] = true
				if it, ok := s.Type.(*ast.InterfaceType); ok {
					for _, m := range it.Methods.List {
						for _, n := range m.Names {
							names[s.Name.Name+"."+n.Name] = true
						}
					}
				}
			case *ast.ValueSpec:
				for _, n := range s.Names {
					names[n.Name] = true
				}
			}
		}
	}
}

func receiverName(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.StarExpr:
		return receiverName(e.X)
	case *ast.IndexExpr: // a generic type of one parameter
		return receiverName(e.X)
	case *ast.IndexListExpr: // a generic type of several
		return receiverName(e.X)
	case *ast.Ident:
		return e.Name
	}
	return ""
}
