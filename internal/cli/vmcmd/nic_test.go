package vmcmd

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/cli/cmdutil"
)

// nicAPI is a fake API server: it answers GET of vm web1 with two NICs
// and every change with a queued task, recording the changes.
type nicAPI struct {
	mu   sync.Mutex
	reqs []string // "METHOD PATH BODY"
	cfg  string
}

func newNICAPI(t *testing.T) *nicAPI {
	a := &nicAPI{}
	vm := &api.VM{Metadata: api.ObjectMeta{ID: "id-web1", Name: "web1"}, Spec: api.VMSpec{NICs: []api.VMNIC{
		{Name: "nic0", PortGroup: api.Ref{ID: "pg-1", Name: "vm-network"}, MAC: "52:54:00:00:00:01", Model: "virtio"},
		{Name: "nic1", PortGroup: api.Ref{ID: "pg-2", Name: "web"}, MAC: "52:54:00:00:00:02", Model: "e1000", IPv4: "192.0.2.7", LinkDown: true, Slot: "hp0"},
	}}, Status: api.VMStatus{NICs: []api.NICStatus{{Name: "nic0"}, {Name: "nic1", Tap: "vt0123abcdn1"}}}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.Method == http.MethodGet && r.URL.Path == "/api/v1/vms/web1" {
			json.NewEncoder(w).Encode(vm)
			return
		}
		b, _ := io.ReadAll(r.Body)
		a.mu.Lock()
		a.reqs = append(a.reqs, strings.TrimSpace(r.Method+" "+r.URL.Path+" "+string(b)))
		a.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
		json.NewEncoder(w).Encode(api.Task{Metadata: api.ObjectMeta{ID: "task-1"}, State: api.TaskQueued})
	}))
	t.Cleanup(srv.Close)
	a.cfg = filepath.Join(t.TempDir(), "config.json")
	if err := (client.Config{Server: srv.URL, Token: "t"}).Save(a.cfg); err != nil {
		t.Fatal(err)
	}
	return a
}

// run runs vdc vm nic ARGS and returns what it printed and its error.
func (a *nicAPI) run(t *testing.T, output string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	g := &cmdutil.Globals{Config: a.cfg, Output: output, Stdout: &out, Stderr: io.Discard}
	cmd := newNICCmd(g)
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func (a *nicAPI) sent() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := a.reqs
	a.reqs = nil
	return out
}

// vm nic add/update/rm send what their arguments and flags say, and
// nothing when they are wrong.
func TestNICCommandsSendWhatTheFlagsSay(t *testing.T) {
	a := newNICAPI(t)
	for _, c := range []struct {
		args []string
		want string // the request sent; "" for none
		err  string // the error, when the command must fail
	}{
		{[]string{"add", "web1", "dmz", "--async"}, `POST /api/v1/vms/web1/nics {"portGroup":"dmz"}`, ""},
		{[]string{"add", "web1", "dmz,model=e1000,mac=52:54:00:12:34:56", "--async"},
			`POST /api/v1/vms/web1/nics {"portGroup":"dmz","mac":"52:54:00:12:34:56","model":"e1000"}`, ""},
		{[]string{"add", "web1", "dmz,model=ne2000"}, "", `PORTGROUP "dmz,model=ne2000": model must be virtio, e1000 or rtl8139`},
		{[]string{"add", "web1", "dmz,mac=zz"}, "", "not a MAC address"},
		{[]string{"add", "web1"}, "", "2"},
		{[]string{"update", "web1", "nic1", "--portgroup", "db", "--link", "down", "--async"},
			`PATCH /api/v1/vms/web1/nics/nic1 {"portGroup":"db","linkDown":true}`, ""},
		{[]string{"update", "web1", "nic1", "--link", "up", "--async"}, `PATCH /api/v1/vms/web1/nics/nic1 {"linkDown":false}`, ""},
		{[]string{"update", "web1", "nic1", "--portgroup", "db", "--async"}, `PATCH /api/v1/vms/web1/nics/nic1 {"portGroup":"db"}`, ""},
		{[]string{"update", "web1", "nic1", "--link", "sideways"}, "", `--link must be up or down, got "sideways"`},
		{[]string{"update", "web1", "nic1"}, "", "nothing to change"},
		{[]string{"update", "web1", "nic1", "--portgroup", ""}, "", "give a port group"},
		{[]string{"rm", "web1", "nic1", "--async"}, `DELETE /api/v1/vms/web1/nics/nic1`, ""},
	} {
		out, err := a.run(t, cmdutil.OutputTable, c.args...)
		sent := strings.Join(a.sent(), "\n")
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("vm nic %s: error %v, want one saying %q", strings.Join(c.args, " "), err, c.err)
		case c.err == "" && err != nil:
			t.Errorf("vm nic %s: %v", strings.Join(c.args, " "), err)
		case sent != c.want:
			t.Errorf("vm nic %s sent %q, want %q", strings.Join(c.args, " "), sent, c.want)
		case c.err == "" && strings.TrimSpace(out) != "task-1":
			t.Errorf("vm nic %s --async printed %q, want the task ID", strings.Join(c.args, " "), out)
		}
	}
}

// vm nic ls shows each NIC's port group, model, MAC, address, tap (or
// NAT) and link; -o json gives the same as fields.
func TestNICLs(t *testing.T) {
	a := newNICAPI(t)
	out, err := a.run(t, cmdutil.OutputTable, "ls", "web1")
	if err != nil {
		t.Fatal(err)
	}
	want := `NAME  PORT GROUP  MODEL   MAC                IPV4       TAP           LINK
nic0  vm-network  virtio  52:54:00:00:00:01  -          - (nat)       up
nic1  web         e1000   52:54:00:00:00:02  192.0.2.7  vt0123abcdn1  down
`
	if out != want {
		t.Fatalf("vm nic ls:\n%s\nwant:\n%s", out, want)
	}
	out, err = a.run(t, cmdutil.OutputJSON, "ls", "web1")
	if err != nil {
		t.Fatal(err)
	}
	var got []nicView
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("vm nic ls -o json: %v: %s", err, out)
	}
	if len(got) != 2 || got[1] != (nicView{Name: "nic1", PortGroup: "web", Model: "e1000", MAC: "52:54:00:00:00:02", IPv4: "192.0.2.7", Tap: "vt0123abcdn1", LinkDown: true, Slot: "hp0"}) {
		t.Fatalf("vm nic ls -o json: %+v", got)
	}
}
