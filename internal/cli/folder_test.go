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

// vdc folder, against a real server: folders made by path, listed by
// path, renamed, given permissions on by path, and deleted only empty.
func TestFolderCommands(t *testing.T) {
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
	vdc := func(args ...string) (string, error) {
		var out bytes.Buffer
		root := newRoot(&cmdutil.Globals{Stdout: &out, Stderr: &out})
		root.SetArgs(append([]string{"--config", srv.ClientConfigPath()}, args...))
		err := root.Execute()
		return out.String(), err
	}
	for _, c := range []struct {
		args    []string
		out     string // in the output, when the command succeeds
		failure string // in the error, when it must fail
	}{
		{args: []string{"dc", "create", "dc1"}, out: "datacenter dc1 created"},
		{args: []string{"folder", "create", "/web/prod"}, failure: "--parents"},
		{args: []string{"folder", "create", "/web/prod", "--parents", "--description", "production"}, out: "folder /web/prod created"},
		{args: []string{"folder", "create", "/web-old"}, out: "folder /web-old created"},
		{args: []string{"folder", "create", "/web"}, failure: "already exists"},
		{args: []string{"folder", "info", "/web/prod"}, out: "production"},
		{args: []string{"folder", "rename", "/web", "www"}, out: "now /www"},
		{args: []string{"folder", "info", "prod"}, out: "/www/prod"},
		{args: []string{"permission", "add", "--object", "folders:/www", "--user", "alice", "--role", "VirtualMachineUser", "--propagate"}, out: "on folders:/www"},
		{args: []string{"permission", "ls"}, out: "folders:/www"},
		{args: []string{"folder", "delete", "/www"}, failure: "prod"},
		{args: []string{"vm", "move", "nosuchvm", "/www"}, failure: "not found"},
	} {
		out, err := vdc(c.args...)
		switch {
		case c.failure != "" && (err == nil || !strings.Contains(err.Error(), c.failure)):
			t.Errorf("vdc %s: %v, want an error saying %q\n%s", strings.Join(c.args, " "), err, c.failure, out)
		case c.failure == "" && (err != nil || !strings.Contains(out, c.out)):
			t.Errorf("vdc %s: %v, want %q in\n%s", strings.Join(c.args, " "), err, c.out, out)
		}
	}
	out, err := vdc("folder", "ls")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var paths []string
	for _, l := range lines[1:] {
		paths = append(paths, strings.Fields(l)[0])
	}
	if got := strings.Join(paths, " "); got != "/web-old /www /www/prod" {
		t.Errorf("vdc folder ls lists %q, want each folder after its parent:\n%s", got, out)
	}
}
