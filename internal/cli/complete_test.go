package cli

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/cli/cmdutil"
)

// complete runs `vdc __complete ARGS...` as the shell scripts do and
// returns the offered words (the last line is cobra's directive).
func complete(t *testing.T, cfg string, args ...string) []string {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRoot(&cmdutil.Globals{Stdout: &out, Stderr: &errOut})
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(append([]string{"__complete", "--config", cfg}, args...))
	if err := root.Execute(); err != nil {
		t.Fatalf("__complete %v: %v", args, err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[len(lines)-1], ":") {
		t.Fatalf("__complete %v: no directive in %q", args, out.String())
	}
	var words []string
	for _, l := range lines[:len(lines)-1] {
		words = append(words, strings.SplitN(l, "\t", 2)[0])
	}
	return words
}

func completionServer(t *testing.T) string {
	vm := func(name string, template bool, snaps ...string) *api.VM {
		v := &api.VM{Metadata: api.ObjectMeta{ID: "id-" + name, Name: name}, Spec: api.VMSpec{Template: template,
			Disks: []api.VMDisk{{Name: "disk0"}, {Name: "disk1"}}, NICs: []api.VMNIC{{Name: "nic0"}, {Name: "nic2"}}}}
		for _, s := range snaps {
			v.Spec.Snapshots = append(v.Spec.Snapshots, api.VMSnapshot{Name: s})
		}
		v.Spec.Snapshots = append(v.Spec.Snapshots, api.VMSnapshot{Name: "hidden-one", Hidden: true})
		return v
	}
	vms := []*api.VM{vm("web1", false, "before-upgrade", "base"), vm("web2", false), vm("db1", false), vm("gold", true)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/api/v1/vms":
			json.NewEncoder(w).Encode(api.List[*api.VM]{Items: vms})
		case r.URL.Path == "/api/v1/vms/web1":
			json.NewEncoder(w).Encode(vms[0])
		case r.URL.Path == "/api/v1/portgroups":
			json.NewEncoder(w).Encode(api.List[*api.PortGroup]{Items: []*api.PortGroup{{Metadata: api.ObjectMeta{Name: "web"}}, {Metadata: api.ObjectMeta{Name: "db"}}}})
		case r.URL.Path == "/api/v1/hosts":
			json.NewEncoder(w).Encode(api.List[*api.Host]{Items: []*api.Host{{Metadata: api.ObjectMeta{Name: "host-1"}}, {Metadata: api.ObjectMeta{Name: "host-2"}}}})
		default:
			w.WriteHeader(404)
			w.Write([]byte(`{"error":{"code":"not_found","message":"no"}}`))
		}
	}))
	t.Cleanup(srv.Close)
	cfg := filepath.Join(t.TempDir(), "config.json")
	if err := (client.Config{Server: srv.URL, Token: "t"}).Save(cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestCompletionOfNames(t *testing.T) {
	cfg := completionServer(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"vm", "start", ""}, "web1 web2 db1"},
		{[]string{"vm", "start", "we"}, "web1 web2"},
		{[]string{"vm", "info", ""}, "web1 web2 db1"},
		{[]string{"vm", "start", "web1", ""}, ""}, // one argument only
		{[]string{"vm", "snapshot", "revert", "web1", ""}, "before-upgrade base"},
		{[]string{"vm", "snapshot", "rm", "web1", "b"}, "before-upgrade base"},
		{[]string{"vm", "disk", "resize", "web1", ""}, "disk0 disk1"},
		{[]string{"vm", "migrate", "web1", "--host", ""}, "host-1 host-2"},
		{[]string{"vm", "create", "x", "--from-template", ""}, "gold"},
		{[]string{"host", "maintenance", "enter", ""}, "host-1 host-2"},
		{[]string{"vm", "update", "web1", "--vnc", ""}, "on off"},
		{[]string{"vm", "nic", "rm", "web1", ""}, "nic0 nic2"},
		{[]string{"vm", "nic", "add", "web1", ""}, "web db"},
		{[]string{"vm", "nic", "update", "web1", "nic0", "--portgroup", ""}, "web db"},
		{[]string{"vm", "nic", "update", "web1", "nic0", "--link", ""}, "up down"},
	} {
		if got := strings.Join(complete(t, cfg, c.args...), " "); got != c.want {
			t.Errorf("vdc %s<Tab>: %q, want %q", strings.Join(c.args, " "), got, c.want)
		}
	}
}

// A server that does not answer gives no completions, quickly and
// without an error in the command line.
func TestCompletionWithoutServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close() // accepts nothing: a server that hangs
	cfg := filepath.Join(t.TempDir(), "config.json")
	if err := (client.Config{Server: "http://" + ln.Addr().String(), Token: "t"}).Save(cfg); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if got := complete(t, cfg, "vm", "start", ""); len(got) != 0 {
		t.Fatalf("completions from no server: %q", got)
	}
	if took := time.Since(start); took > 10*completionTimeout {
		t.Fatalf("completion took %s with a hanging server", took)
	}
	if got := complete(t, filepath.Join(t.TempDir(), "none.json"), "vm", "start", ""); len(got) != 0 {
		t.Fatalf("completions without a config: %q", got)
	}
}
