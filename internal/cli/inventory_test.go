package cli

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// run executes the CLI with a config that does not exist: a command that
// reached the server would fail on that instead.
func run(args ...string) error {
	root := NewRoot()
	root.SetArgs(append([]string{"--config", "/nonexistent/vdc-test-config.json"}, args...))
	return root.Execute()
}

func TestCommandErrorsBeforeAnyCall(t *testing.T) {
	for _, c := range []struct {
		args    []string
		wantErr string
	}{
		{[]string{"vm", "ls", "-o", "yaml"}, `unknown output format "yaml"`},
		{[]string{"host", "info", "h1", "-o", "xml"}, `unknown output format "xml"`},
		{[]string{"events", "-o", "yaml"}, `unknown output format "yaml"`},
		{[]string{"vm", "info"}, "usage: vdc vm info NAME"},
		{[]string{"vm", "start", "a", "b"}, "accepts 1 arg(s), received 2"},
		{[]string{"vm", "strat", "web1"}, "did you mean start"},
		{[]string{"dc", "create"}, "usage: vdc datacenter create NAME"},
		{[]string{"vm", "create", "x", "--cpus", "abc"}, `"--cpus"`},
		{[]string{"vm", "create", "x", "--memory", "abc"}, "--memory"},
		{[]string{"vm", "create", "x", "--cpus", "0"}, "--cpus must be between 1"},
		{[]string{"vm", "create", "bad/name"}, "invalid character"},
		{[]string{"vm", "update", "x"}, "nothing to change"},
		{[]string{"vm", "ls", "--power", "of"}, "--power must be one of"},
		{[]string{"task", "ls", "--all", "--limit", "5"}, "--all and --limit"},
		{[]string{"host", "token", "create", "--uses", "0"}, "--uses must be at least 1"},
		{[]string{"cluster", "update", "c", "--cpu-overcommit", "-1"}, "--cpu-overcommit must be above 0"},
		{[]string{"ds", "create", "d"}, `"path" not set`},
		{[]string{"folder", "create", "web"}, "must start with /"},
		{[]string{"folder", "create", "/web//x"}, "name is empty"},
		{[]string{"folder", "rename", "/web", "a/b"}, "invalid character"},
		{[]string{"vm", "move", "web1"}, "usage: vdc vm move VM FOLDER"},
	} {
		err := run(c.args...)
		if err == nil || !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("vdc %s: error = %v, want %q", strings.Join(c.args, " "), err, c.wantErr)
		}
	}
	// With good arguments the same commands get as far as the client config.
	if err := run("vm", "ls", "-o", "json"); err == nil || !strings.Contains(err.Error(), "no client config") {
		t.Errorf("vdc vm ls -o json: error = %v, want the missing config", err)
	}
}

// Every command says what it does, and every command that changes
// something can return at once with --async.
func TestCommandTree(t *testing.T) {
	root := NewRoot()
	mine := map[string]bool{"vm": true, "host": true, "datacenter": true, "cluster": true, "datastore": true,
		"portgroup": true, "task": true, "events": true, "version": true, "folder": true}
	mutating := map[string]bool{"create": true, "update": true, "delete": true, "start": true, "stop": true,
		"reset": true, "suspend": true, "resume": true, "enter": true, "exit": true, "migrate": true,
		"clone": true, "revert": true, "rm": true, "add": true, "resize": true, "mark-template": true, "move": true, "rename": true}
	found := map[string]bool{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Short == "" {
			t.Errorf("%s has no Short help", c.CommandPath())
		}
		if !c.HasSubCommands() {
			found[c.CommandPath()] = true
			wantAsync := mutating[c.Name()] && c.CommandPath() != "vdc host token create"
			if hasAsync := c.Flags().Lookup("async") != nil; hasAsync != wantAsync {
				t.Errorf("%s: --async present = %v, want %v", c.CommandPath(), hasAsync, wantAsync)
			}
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	for _, c := range root.Commands() {
		if mine[c.Name()] {
			walk(c)
		}
	}
	for _, p := range []string{"vdc vm create", "vdc vm stop", "vdc vm rm", "vdc host maintenance enter",
		"vdc host token create", "vdc datastore create", "vdc portgroup update", "vdc task wait", "vdc events", "vdc version",
		"vdc folder create", "vdc folder rename", "vdc folder ls", "vdc vm move"} {
		cmd, _, err := root.Find(strings.Fields(p)[1:])
		if err != nil || !found[cmd.CommandPath()] {
			t.Errorf("command %q missing (found %v, %v)", p, cmd.CommandPath(), err)
		}
	}
}
