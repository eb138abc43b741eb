package server_test

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
)

// Bodies that are valid JSON but no object (null, a list, a string...)
// would decode as an empty request: each is refused, and changes nothing.
func TestBodiesThatAreNoJSONObjectAreRefused(t *testing.T) {
	d := newDC(t, 1)
	ctx := context.Background()
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "b1", CPUs: 1, Memory: api.MustSize("64MiB")}))
	before := d.vm("b1")
	tasksBefore, err := d.c.ListTasks(ctx, client.TaskQuery{})
	if err != nil {
		t.Fatal(err)
	}
	tok := adminToken(t, d)
	calls := []struct{ method, path string }{
		{"POST", "/api/v1/vms"}, {"PATCH", "/api/v1/vms/b1"}, {"POST", "/api/v1/vms/b1/power"},
		{"POST", "/api/v1/vms/b1/snapshots"}, {"POST", "/api/v1/vms/b1/clone"}, {"POST", "/api/v1/datacenters"},
		{"PATCH", "/api/v1/hosts/host-1"}, {"POST", "/api/v1/join-tokens"}, {"POST", "/api/v1/tokens"},
		{"POST", "/api/v1/hosts/host-1/replace"},
	}
	bodies := []struct{ body, msg string }{
		{`null`, "request body is null; send a JSON object"},
		{` null `, "request body is null; send a JSON object"},
		{`[]`, "must be a JSON object, not an array"},
		{`[{"name":"x"}]`, "must be a JSON object, not an array"},
		{`"b1"`, "must be a JSON object, not a string"},
		{`1`, "must be a JSON object, not a number"},
		{`true`, "must be a JSON object, not a boolean"},
		{``, "empty"},
	}
	for _, c := range calls {
		for _, b := range bodies {
			if b.body == "" && strings.HasSuffix(c.path, "/replace") {
				continue // its body is optional
			}
			code, body := rawCall(t, d, c.method, c.path, b.body, tok)
			if code != 400 || !strings.Contains(body, b.msg) {
				t.Errorf("%s %s with body %q: %d %s; want 400 saying %q", c.method, c.path, b.body, code, strings.TrimSpace(body), b.msg)
			}
		}
	}
	after := d.vm("b1")
	if after.Metadata.Revision != before.Metadata.Revision || after.Spec.CPUs != before.Spec.CPUs {
		t.Errorf("bad bodies changed VM b1: revision %d -> %d", before.Metadata.Revision, after.Metadata.Revision)
	}
	if n := vmCount(t, d); n != 1 {
		t.Errorf("bad bodies left %d VMs, want 1", n)
	}
	if h := host(t, d, "host-1"); h.Status.Certificate == nil || !h.Status.Certificate.Revoked.IsZero() {
		t.Errorf("a bad body to host replace revoked the host's certificate")
	}
	tasksAfter, err := d.c.ListTasks(ctx, client.TaskQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(tasksAfter) != len(tasksBefore) {
		t.Errorf("bad bodies recorded %d tasks", len(tasksAfter)-len(tasksBefore))
	}
}

func TestQueryParametersAreChecked(t *testing.T) {
	d := newDC(t, 1)
	ctx := context.Background()
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "q1", CPUs: 1, Memory: api.MustSize("64MiB")}))
	tok := adminToken(t, d)
	for _, c := range []struct {
		method, path string
		status       int
		msg          []string
	}{
		{"GET", "/api/v1/vms?power=bogus", 400, []string{"query parameter power must be one of on, off, suspended, unknown", `"bogus"`}},
		{"GET", "/api/v1/vms?colour=red", 400, []string{`unknown query parameter "colour"`, "takes only host, cluster, power"}},
		{"GET", "/api/v1/vms?power=on&power=off", 400, []string{"power is given 2 times"}},
		{"GET", "/api/v1/vms?host=nohost", 404, []string{"nohost"}},
		{"GET", "/api/v1/tasks?state=done", 400, []string{"state must be one of queued, running, active, succeeded, failed, canceled"}},
		{"GET", "/api/v1/tasks?limit=many", 400, []string{"limit"}},
		{"GET", "/api/v1/events?types=task,vm.powr", 400, []string{"types takes a comma-separated list of", `"vm.powr"`}},
		{"GET", "/api/v1/events?kind=vm", 400, []string{"kind must be one of", "vms"}},
		{"GET", "/api/v1/version?verbose=1", 400, []string{"takes no query parameters"}},
		{"GET", "/api/v1/clusters?datacenter=nodc", 404, []string{"nodc"}},
		{"GET", "/api/v1/hosts?clustre=c", 400, []string{`unknown query parameter "clustre"`, "takes only cluster"}},
		{"DELETE", "/api/v1/vms/q1?forse=true", 400, []string{`unknown query parameter "forse"`, "takes only force"}},
		{"GET", "/api/v1/vms?%zz", 400, []string{"malformed query string"}},
	} {
		code, body := rawCall(t, d, c.method, c.path, "", tok)
		var eb api.ErrorBody
		if json.Unmarshal([]byte(body), &eb) == nil && eb.Error != nil {
			body = eb.Error.Message
		}
		ok := code == c.status
		for _, m := range c.msg {
			ok = ok && strings.Contains(body, m)
		}
		if !ok {
			t.Errorf("%s %s: %d %s; want %d saying %q", c.method, c.path, code, strings.TrimSpace(body), c.status, c.msg)
		}
	}
	if d.vm("q1").Metadata.Name != "q1" {
		t.Fatal("a refused delete deleted the VM")
	}
	for _, p := range []string{"/api/v1/vms?power=off", "/api/v1/vms?power=", "/api/v1/tasks?state=active&limit=2", "/api/v1/hosts?cluster=cluster1"} {
		if code, body := rawCall(t, d, "GET", p, "", tok); code != 200 {
			t.Errorf("GET %s: %d %s", p, code, body)
		}
	}
	// The OpenAPI document lists each route's parameters, their allowed
	// values, and the Idempotency-Key header of the calls that take it.
	code, body := rawCall(t, d, "GET", "/api/v1/openapi.json", "", tok)
	if code != 200 {
		t.Fatalf("openapi.json: %d", code)
	}
	var doc struct {
		Paths map[string]map[string]struct {
			Parameters []struct {
				Name, In string
				Schema   struct {
					Enum []string `json:"enum"`
				} `json:"schema"`
			} `json:"parameters"`
		} `json:"paths"`
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	has := func(path, method, name, in string, enum ...string) {
		t.Helper()
		for _, p := range doc.Paths[path][method].Parameters {
			if p.Name == name && p.In == in && strings.Join(p.Schema.Enum, ",") == strings.Join(enum, ",") {
				return
			}
		}
		t.Errorf("openapi.json: %s %s has no %s parameter %s (enum %v): %+v", method, path, in, name, enum, doc.Paths[path][method].Parameters)
	}
	has("/api/v1/vms", "get", "power", "query", api.PowerOn, api.PowerOff, api.PowerSuspended, api.PowerUnknown)
	has("/api/v1/vms", "get", "host", "query")
	has("/api/v1/tasks", "get", "state", "query", "queued", "running", "active", "succeeded", "failed", "canceled")
	has("/api/v1/vms", "post", "Idempotency-Key", "header")
	has("/api/v1/join-tokens", "post", "Idempotency-Key", "header")
	has("/api/v1/vms/{name}/snapshots", "post", "Idempotency-Key", "header")
}

// What the Go client sends, with every option it has, the server takes.
func TestClientSendsOnlyDeclaredQueryParameters(t *testing.T) {
	d := newDC(t, 1)
	ctx := context.Background()
	task := d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "c1", CPUs: 1, Memory: api.MustSize("64MiB"), Host: "host-1"}))
	unknown := func(what string, err error) {
		t.Helper()
		if err != nil && strings.Contains(err.Error(), "query parameter") {
			t.Errorf("%s: %v", what, err)
		}
	}
	_, err := client.List[*api.VM](ctx, d.c, api.KindVM, url.Values{"host": {"host-1"}, "cluster": {"cluster1"}, "power": {api.PowerOff}, "folder": {"/"}})
	unknown("list VMs", err)
	_, err = client.List[*api.Host](ctx, d.c, api.KindHost, url.Values{"cluster": {"cluster1"}})
	unknown("list hosts", err)
	for _, k := range []string{api.KindCluster, api.KindDatastore, api.KindPortGroup, api.KindDatacenter, api.KindFolder} {
		_, err = client.List[*api.Cluster](ctx, d.c, k, url.Values{"datacenter": {"dc1"}})
		unknown("list "+k, err)
	}
	_, err = d.c.ListTasks(ctx, client.TaskQuery{State: "active", Target: "c1", Limit: 5})
	unknown("list tasks", err)
	_, err = d.c.WaitTask(ctx, task.Metadata.ID, func(*api.Task) {})
	unknown("wait for a task with progress", err)
	_, err = d.c.WaitTask(ctx, task.Metadata.ID, nil)
	unknown("wait for a task", err)
	_, err = d.c.ConsoleLog(ctx, "c1", 100)
	unknown("console log", err)
	_, _, err = d.c.DownloadExport(ctx, "nosuchexport", "x.ovf")
	unknown("download an export file", err)
	// An event stream with every filter: it runs until the event it waits
	// for, a 400 would end it at once.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	vm := d.vm("c1")
	ended := make(chan error, 1)
	go func() {
		ended <- d.c.Events(sctx, client.EventQuery{Types: []string{api.EventDeleted}, Kind: api.KindVM, ID: vm.Metadata.ID, After: 1},
			func(e api.Event) error { cancel(); return nil })
	}()
	_, err = d.c.Delete(ctx, api.KindVM, "c1", url.Values{"force": {"true"}})
	unknown("delete a VM with force", err)
	if err := <-ended; err != nil && sctx.Err() == nil {
		unknown("event stream", err)
		t.Fatalf("event stream: %v", err)
	}
}
