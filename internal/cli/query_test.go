package cli

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/internal/cli/cmdutil"
	"github.com/vdc-project/vdc/internal/server"
)

// The server refuses query parameters a route does not declare: every
// filter flag of the list commands must map to one it does.
func TestListFiltersAreQueryParametersTheServerTakes(t *testing.T) {
	dir := t.TempDir()
	srv, err := server.New(server.Config{DataDir: filepath.Join(dir, "server"), Listen: "127.0.0.1:0", Name: "test",
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	for _, args := range [][]string{
		{"vm", "ls", "--host", "h", "--cluster", "c", "--power", "on", "--folder", "/web"},
		{"folder", "ls", "--datacenter", "d"},
		{"host", "ls", "--cluster", "c"},
		{"cluster", "ls", "--datacenter", "d"},
		{"datastore", "ls", "--datacenter", "d"},
		{"portgroup", "ls", "--datacenter", "d"},
		{"task", "ls", "--state", "active", "--target", "x", "--limit", "3"},
		{"task", "ls", "--all"},
		{"image", "ls"},
		{"template", "ls"},
		{"token", "ls"},
		{"vm", "delete", "nosuchvm", "--force"},
	} {
		var out bytes.Buffer
		root := newRoot(&cmdutil.Globals{Stdout: &out, Stderr: &out})
		root.SetArgs(append([]string{"--config", srv.ClientConfigPath()}, args...))
		err := root.Execute()
		// Filters that name nothing are 404s; what must not happen is a
		// parameter the server does not know.
		if err != nil && !strings.Contains(err.Error(), "not found") || strings.Contains(out.String()+errString(err), "query parameter") {
			t.Errorf("vdc %s: %v\n%s", strings.Join(args, " "), err, out.String())
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
