package control_test

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const prefix = "github.com/vdc-project/vdc/internal/"

// layer of each control package: a package may import control packages of
// a lower layer only (domain packages talk to each other through
// interfaces they declare, wired by the server).
var layer = map[string]int{
	"control/retry": 0, "control/authz": 0, "control/audit": 0,
	"control/state": 1, "control/auth": 1,
	"control/leader": 2, "control/ca": 2, "control/tasks": 2, "control/hosts": 2, "control/placement": 2,
	"control/inventory": 3, "control/rights": 2,
	"control/enroll": 4, "control/vms": 4, "control/migration": 4, "control/storage": 4,
	"control/transfer": 4, "control/ha": 4, "control/maintenance": 4, "control/network": 4, "control/hosts/liveness": 4,
	"control/events": 5, "control/views": 5,
}

// The import rules of internal/control's doc hold: no control package
// imports internal/server, none imports one of its own layer or above.
func TestImportsFollowTheLayers(t *testing.T) {
	err := filepath.WalkDir(".", func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return err
		}
		dir := "control/" + filepath.ToSlash(filepath.Dir(p))
		pkg := dir
		for {
			if _, ok := layer[pkg]; ok || !strings.Contains(pkg, "/") {
				break
			}
			pkg = pkg[:strings.LastIndex(pkg, "/")] // a subpackage (statetest) is its parent's
		}
		own, known := layer[pkg]
		if dir == "control/." {
			return nil
		}
		if !known {
			t.Errorf("%s: package %s has no layer; add it to this test and to internal/control's doc", p, dir)
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), p, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, im := range f.Imports {
			path, _ := strconv.Unquote(im.Path.Value)
			rel, ok := strings.CutPrefix(path, prefix)
			if !ok {
				continue
			}
			if rel == "server" || strings.HasPrefix(rel, "server/") || rel == "cli" {
				t.Errorf("%s imports %s: control packages never import the HTTP layer or the CLI", p, path)
			}
			if l, ok := layer[rel]; ok && rel != pkg && l >= own {
				t.Errorf("%s (layer %d) imports %s (layer %d): only lower layers may be imported", p, own, rel, l)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
