package cli

import (
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

func TestParseLabels(t *testing.T) {
	good := []struct {
		specs  []string
		update bool
		want   map[string]string
	}{
		{nil, false, nil},
		{[]string{"tier=web", "env=prod"}, false, map[string]string{"tier": "web", "env": "prod"}},
		{[]string{"expr=a=b"}, false, map[string]string{"expr": "a=b"}},
		{[]string{"sim.vdc.io/ignore-acpi=true"}, false, map[string]string{"sim.vdc.io/ignore-acpi": "true"}},
		{[]string{"old=", "tier=db"}, true, map[string]string{"old": "", "tier": "db"}},
	}
	for _, c := range good {
		got, err := parseLabels(c.specs, c.update)
		if err != nil {
			t.Errorf("parseLabels(%q, %v): %v", c.specs, c.update, err)
		} else if !reflect.DeepEqual(got, c.want) {
			t.Errorf("parseLabels(%q, %v) = %v, want %v", c.specs, c.update, got, c.want)
		}
	}
	bad := []struct {
		specs   []string
		update  bool
		wantErr string
	}{
		{[]string{"tier"}, false, "want key=value"},
		{[]string{"=web"}, true, "key is empty"},
		{[]string{"tier="}, false, "give a value"},
		{[]string{"a=1", "a=2"}, true, "given twice"},
	}
	for _, c := range bad {
		_, err := parseLabels(c.specs, c.update)
		if err == nil || !strings.HasPrefix(err.Error(), "--label") || !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("parseLabels(%q, %v) error = %v, want --label ... %q", c.specs, c.update, err, c.wantErr)
		}
	}
}

func TestNeedChange(t *testing.T) {
	cmd := &cobra.Command{Use: "update"}
	addMetaFlags(cmd, true, true)
	addAsync(cmd, &globals{})
	err := needChange(cmd)
	if err == nil || !strings.Contains(err.Error(), "--description, --label, --name") || strings.Contains(err.Error(), "--async") {
		t.Errorf("no change flag: error = %v, want one listing the change flags, without --async", err)
	}
	if err := cmd.Flags().Set("async", "true"); err != nil {
		t.Fatal(err)
	}
	if needChange(cmd) == nil {
		t.Errorf("--async alone counted as a change")
	}
	if err := cmd.Flags().Set("description", ""); err != nil {
		t.Fatal(err)
	}
	if err := needChange(cmd); err != nil {
		t.Errorf("--description '' (clear it) is a change: %v", err)
	}
}

func TestUpdateFlagsOnlySendWhatWasGiven(t *testing.T) {
	cmd := &cobra.Command{Use: "update"}
	m := addMetaFlags(cmd, true, true)
	if err := cmd.ParseFlags([]string{"--name", "web2"}); err != nil {
		t.Fatal(err)
	}
	mc, err := m.change("vm")
	if err != nil || mc.name == nil || *mc.name != "web2" {
		t.Errorf("change: name %v, %v; want web2", mc.name, err)
	}
	if mc.description != nil || mc.labels != nil {
		t.Errorf("description and labels not given but sent: %+v", mc)
	}
	if err := cmd.ParseFlags([]string{"--name", "bad name"}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.change("vm"); err == nil || !strings.HasPrefix(err.Error(), "--name") {
		t.Errorf("bad --name: error = %v", err)
	}
}

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
		"portgroup": true, "task": true, "events": true, "version": true}
	mutating := map[string]bool{"create": true, "update": true, "delete": true, "start": true, "stop": true,
		"reset": true, "suspend": true, "resume": true, "enter": true, "exit": true, "migrate": true,
		"clone": true, "revert": true, "rm": true, "add": true, "resize": true, "mark-template": true}
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
		"vdc host token create", "vdc datastore create", "vdc portgroup update", "vdc task wait", "vdc events", "vdc version"} {
		cmd, _, err := root.Find(strings.Fields(p)[1:])
		if err != nil || !found[cmd.CommandPath()] {
			t.Errorf("command %q missing (found %v, %v)", p, cmd.CommandPath(), err)
		}
	}
}
