package cli

import (
	"bytes"
	"encoding/json"
	"errors"
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

// What an older server let in, or a hostile one sends: a description
// that clears the screen and sets the window title, a bidi override.
const (
	hostile = "ok\u001b[2J\u001b]0;pwned\u0007"
	bidi    = "invoice\u202efdp.exe"
)

// fakeServer answers like a server whose store holds objects with
// control characters in them (written by an older version).
func fakeServer(t *testing.T) string {
	t.Helper()
	now := time.Now().UTC()
	vm := &api.VM{
		Metadata: api.ObjectMeta{ID: "vm-1", Name: "evil", Labels: map[string]string{"tier": hostile}, Created: now},
		Spec: api.VMSpec{CPUs: 1, MemoryBytes: api.MustSize("64MiB"), Description: hostile,
			Disks:     []api.VMDisk{{Name: "disk0", Path: "evil/disk0\u001b[2J.qcow2", Bus: "virtio", SizeBytes: api.MustSize("1GiB")}},
			Snapshots: []api.VMSnapshot{{ID: "1", Name: "s1", Description: hostile, PowerState: api.PowerOff, Created: now}}},
		Status: api.VMStatus{Phase: api.PhaseReady, PowerState: api.PowerOff, Message: hostile,
			Guest: &api.GuestInfo{State: api.GuestRunning, OS: hostile, Hostname: bidi}},
	}
	task := &api.Task{Metadata: api.ObjectMeta{ID: "task-1", Created: now}, Op: "vm.create", State: api.TaskFailed, Message: hostile,
		Target: api.TaskTarget{Kind: api.KindVM, ID: "vm-1", Name: "evil"}, Error: &api.Error{Code: api.CodeInvalid, Message: hostile}}
	reply := func(w http.ResponseWriter, status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == "GET" && r.URL.Path == "/api/v1/vms":
			reply(w, 200, api.List[*api.VM]{Items: []*api.VM{vm}})
		case r.Method == "GET" && strings.HasSuffix(r.URL.Path, "/snapshots"):
			reply(w, 200, api.List[api.VMSnapshot]{Items: vm.Spec.Snapshots})
		case r.Method == "GET" && strings.HasPrefix(r.URL.Path, "/api/v1/vms/"):
			reply(w, 200, vm)
		case r.Method == "GET" && r.URL.Path == "/api/v1/tasks":
			reply(w, 200, api.List[*api.Task]{Items: []*api.Task{task}})
		case r.Method == "GET" && strings.HasPrefix(r.URL.Path, "/api/v1/tasks/"):
			reply(w, 200, task)
		default:
			reply(w, 400, api.ErrorBody{Error: &api.Error{Code: api.CodeInvalid, Message: "refused: " + hostile}})
		}
	}))
	t.Cleanup(srv.Close)
	cfg := filepath.Join(t.TempDir(), "config.json")
	if err := (client.Config{Server: srv.URL, Token: "t"}).Save(cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// runCaptured runs the CLI against a config, returning what it printed
// on stdout and stderr, and its error as Execute would print it.
func runCaptured(cfg string, args ...string) (string, error) {
	var out, errOut bytes.Buffer
	root := newRoot(&cmdutil.Globals{Stdout: &out, Stderr: &errOut})
	root.SetArgs(append([]string{"--config", cfg}, args...))
	err := root.Execute()
	if err != nil {
		printError(&errOut, err)
	}
	return out.String() + errOut.String(), err
}

// The CLI prints what the server sends without emitting its control
// characters: tables, info views, snapshot trees, tasks and errors.
func TestCLIEscapesServerText(t *testing.T) {
	cfg := fakeServer(t)
	for _, args := range [][]string{
		{"vm", "ls"},
		{"vm", "info", "evil"},
		{"vm", "snapshot", "ls", "evil"},
		{"task", "ls"},
		{"task", "wait", "task-1"},
		{"vm", "start", "evil"},
		{"datacenter", "create", "dc9"},
	} {
		out, _ := runCaptured(cfg, args...)
		if strings.ContainsAny(out, "\u001b\u0007\u202e") {
			t.Errorf("vdc %s printed raw control characters:\n%q", strings.Join(args, " "), out)
		}
		if !strings.Contains(out, `\x1b[2J`) && !strings.Contains(out, `\u202e`) {
			t.Errorf("vdc %s does not show the escaped text:\n%s", strings.Join(args, " "), out)
		}
	}
	// -o json is escaped by JSON itself, and says exactly what is stored.
	out, err := runCaptured(cfg, "vm", "info", "evil", "-o", "json")
	var back api.VM
	if err != nil || strings.Contains(out, "\u001b") || json.Unmarshal([]byte(out), &back) != nil || back.Spec.Description != hostile {
		t.Errorf("-o json: %v %q", err, out)
	}
}

func TestEventAndErrorLinesAreEscaped(t *testing.T) {
	e := api.Event{Time: time.Now(), Type: api.EventTask, Kind: api.KindVM, Name: "evil", Message: hostile,
		Task: &api.Task{State: api.TaskRunning, Progress: 5, Message: bidi}}
	var b bytes.Buffer
	if err := printEvent(&b, e, false); err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(b.String(), "\u001b\u0007\u202e") {
		t.Errorf("raw control characters printed:\n%q", b.String())
	}
	var errOut bytes.Buffer
	printError(&errOut, errors.New("create vm x: "+hostile))
	if strings.Contains(errOut.String(), "\u001b") {
		t.Errorf("an error printed raw: %q", errOut.String())
	}
}
