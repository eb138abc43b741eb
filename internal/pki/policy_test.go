package pki

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// Every TLS configuration vdc makes, on either side of a connection, goes
// through Harden: a tls.Config literal anywhere else in the code (tests
// aside) would speak Go's defaults, CBC suites included.
func TestEveryTLSConfigIsHardened(t *testing.T) {
	root := filepath.Join("..", "..")
	fset := token.NewFileSet()
	found := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); n == "testdata" || n == "vendor" || strings.HasPrefix(n, ".") && path != root {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		var stack []ast.Node
		ast.Inspect(f, func(n ast.Node) bool {
			if n == nil {
				stack = stack[:len(stack)-1]
				return true
			}
			if lit, ok := n.(*ast.CompositeLit); ok && isTLSConfig(lit.Type) {
				found++
				if !hardened(stack) {
					t.Errorf("%s: a tls.Config that does not go through pki.Harden", fset.Position(lit.Pos()))
				}
			}
			stack = append(stack, n)
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if found < 5 {
		t.Fatalf("found only %d tls.Config literals: is the walk looking at the module?", found)
	}
}

func isTLSConfig(e ast.Expr) bool {
	sel, ok := e.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != "Config" {
		return false
	}
	x, ok := sel.X.(*ast.Ident)
	return ok && x.Name == "tls"
}

// hardened says whether the literal whose ancestors are stack is
// Harden(&tls.Config{...}) or pki.Harden(&tls.Config{...}).
func hardened(stack []ast.Node) bool {
	if len(stack) < 2 {
		return false
	}
	if u, ok := stack[len(stack)-1].(*ast.UnaryExpr); !ok || u.Op != token.AND {
		return false
	}
	call, ok := stack[len(stack)-2].(*ast.CallExpr)
	if !ok {
		return false
	}
	switch fn := call.Fun.(type) {
	case *ast.Ident:
		return fn.Name == "Harden"
	case *ast.SelectorExpr:
		x, ok := fn.X.(*ast.Ident)
		return ok && x.Name == "pki" && fn.Sel.Name == "Harden"
	}
	return false
}
