package cmdutil

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
	AddMetaFlags(cmd, true, true)
	AddAsync(cmd, &Globals{})
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
	m := AddMetaFlags(cmd, true, true)
	if err := cmd.ParseFlags([]string{"--name", "web2"}); err != nil {
		t.Fatal(err)
	}
	mc, err := m.Change("vm")
	if err != nil || mc.Name == nil || *mc.Name != "web2" {
		t.Errorf("change: name %v, %v; want web2", mc.Name, err)
	}
	if mc.Description != nil || mc.Labels != nil {
		t.Errorf("description and labels not given but sent: %+v", mc)
	}
	if err := cmd.ParseFlags([]string{"--name", "bad name"}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Change("vm"); err == nil || !strings.HasPrefix(err.Error(), "--name") {
		t.Errorf("bad --name: error = %v", err)
	}
}
