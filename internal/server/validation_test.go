package server_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
)

// rawCall sends a body as-is, to test what the typed client cannot send.
func rawCall(t *testing.T, d *dc, method, path, body, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, d.srv.URL()+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func adminToken(t *testing.T, d *dc) string {
	cfg, err := client.LoadConfig(d.srv.ClientConfigPath())
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Token
}

func vmCount(t *testing.T, d *dc) int {
	vms, err := client.List[*api.VM](context.Background(), d.c, api.KindVM, nil)
	if err != nil {
		t.Fatal(err)
	}
	return len(vms)
}

func TestEveryAPICallNeedsAToken(t *testing.T) {
	d := newDC(t, 0)
	for _, p := range []string{"/api/v1/vms", "/api/v1/hosts", "/api/v1/tasks", "/api/v1/version", "/api/v1/events", "/api/v1/nonsense", "/"} {
		for _, tok := range []string{"", "wrong"} {
			code, body := rawCall(t, d, "GET", p, "", tok)
			if code != http.StatusUnauthorized {
				t.Errorf("GET %s with token %q: %d %s", p, tok, code, body)
			}
		}
	}
	code, _ := rawCall(t, d, "POST", "/api/v1/vms", `{"name":"x","cpus":1,"memory":"1GiB"}`, "")
	if code != http.StatusUnauthorized {
		t.Errorf("POST without token: %d", code)
	}
	code, _ = rawCall(t, d, "POST", "/api/v1/agent/heartbeat", `{}`, adminToken(t, d))
	if code != http.StatusUnauthorized {
		t.Errorf("heartbeat without a host certificate: %d, want 401", code)
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	d := newDC(t, 1)
	tok := adminToken(t, d)
	cases := []struct {
		name, body string
		status     int
		msg        string
	}{
		{"malformed JSON", `{"name": "a", "cpus": 1,`, 400, "malformed JSON"},
		{"unknown field", `{"name":"a","cpus":1,"memory":"1GiB","colour":"red"}`, 400, "colour"},
		{"trailing data", `{"name":"a","cpus":1,"memory":"1GiB"} {}`, 400, "after the JSON"},
		{"empty body", ``, 400, "empty"},
		{"zero cpus", `{"name":"a","cpus":0,"memory":"1GiB"}`, 400, "cpus"},
		{"negative memory", `{"name":"a","cpus":1,"memory":"-1"}`, 400, "negative"},
		{"negative memory number", `{"name":"a","cpus":1,"memory":-1}`, 400, "memory"},
		{"absurd disk", `{"name":"a","cpus":1,"memory":"1GiB","disks":[{"size":"1EiB"}]}`, 400, "disk 0"},
		{"absurd cpus", `{"name":"a","cpus":100000,"memory":"1GiB"}`, 400, "cpus"},
		{"memory not MiB", `{"name":"a","cpus":1,"memory":1000}`, 400, "memory"},
		{"bad name", `{"name":"bad name!","cpus":1,"memory":"1GiB"}`, 400, "name"},
		{"long name", `{"name":"` + strings.Repeat("a", 64) + `","cpus":1,"memory":"1GiB"}`, 400, "63"},
		{"unknown host", `{"name":"a","cpus":1,"memory":"1GiB","host":"nohost"}`, 404, "nohost"},
		{"unknown port group", `{"name":"a","cpus":1,"memory":"1GiB","nics":[{"portGroup":"nopg"}]}`, 404, "nopg"},
		{"unknown datastore", `{"name":"a","cpus":1,"memory":"1GiB","disks":[{"size":"1GiB","datastore":"nods"}]}`, 404, "nods"},
		{"bad bus", `{"name":"a","cpus":1,"memory":"1GiB","disks":[{"size":"1GiB","bus":"floppy"}]}`, 400, "bus"},
		{"bad MAC", `{"name":"a","cpus":1,"memory":"1GiB","nics":[{"portGroup":"vm-network","mac":"zz"}]}`, 400, "MAC"},
		{"no room", `{"name":"a","cpus":1,"memory":"1TiB"}`, 422, "no host has room"},
		{"string cpus", `{"name":"a","cpus":"two","memory":"1GiB"}`, 400, "cpus"},
	}
	for _, c := range cases {
		code, body := rawCall(t, d, "POST", "/api/v1/vms", c.body, tok)
		if code != c.status || !strings.Contains(body, c.msg) || !strings.Contains(body, `"error"`) {
			t.Errorf("%s: got %d %s; want %d mentioning %q", c.name, code, body, c.status, c.msg)
		}
	}
	if n := vmCount(t, d); n != 0 {
		t.Fatalf("bad requests created %d VMs", n)
	}
	tasks, _ := d.c.ListTasks(context.Background(), client.TaskQuery{Target: "a"})
	if len(tasks) != 0 {
		t.Fatalf("bad requests left %d tasks", len(tasks))
	}
}

func TestDuplicateNamesAreRefused(t *testing.T) {
	d := newDC(t, 1)
	ctx := context.Background()
	req := api.VMCreateRequest{Name: "dup", CPUs: 1, Memory: api.MustSize("64MiB")}
	d.run(d.c.CreateVM(ctx, req))
	if _, err := d.c.CreateVM(ctx, req); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("duplicate VM name: want 409, got %v", err)
	}
	// Many at once: exactly one wins.
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := d.c.CreateVM(ctx, api.VMCreateRequest{Name: "race", CPUs: 1, Memory: api.MustSize("64MiB")})
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				wins++
			} else if !errors.Is(err, api.ErrConflict) {
				t.Errorf("concurrent create: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d concurrent creates of one name succeeded", wins)
	}
	if _, err := d.c.Create(ctx, api.KindDatacenter, api.DatacenterCreateRequest{Name: "dc1"}); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("duplicate datacenter: %v", err)
	}
}

func TestConcurrentUpdateLoserGets409(t *testing.T) {
	d := newDC(t, 1)
	ctx := context.Background()
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "u1", CPUs: 1, Memory: api.MustSize("64MiB")}))
	vm := d.vm("u1")
	one, two := 2, 3
	if _, err := d.c.Update(ctx, api.KindVM, "u1", api.VMUpdateRequest{CPUs: &one}, vm.Metadata.Generation); err != nil {
		t.Fatal(err)
	}
	_, err := d.c.Update(ctx, api.KindVM, "u1", api.VMUpdateRequest{CPUs: &two}, vm.Metadata.Generation)
	if !errors.Is(err, api.ErrConflict) {
		t.Fatalf("second writer with a stale revision: want 409, got %v", err)
	}
	if got := d.vm("u1").Spec.CPUs; got != one {
		t.Fatalf("lost update: cpus %d, want %d", got, one)
	}
	// Racing writers from the same revision: one wins, the rest get 409.
	vm = d.vm("u1")
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins, conflicts := 0, 0
	for i := 1; i <= 8; i++ {
		wg.Add(1)
		go func(n int) {
			defer wg.Done()
			desc := strings.Repeat("x", n)
			_, err := d.c.Update(ctx, api.KindVM, "u1", api.VMUpdateRequest{Description: &desc}, vm.Metadata.Generation)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, api.ErrConflict):
				conflicts++
			default:
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	if wins != 1 || conflicts != 7 {
		t.Fatalf("wins %d conflicts %d", wins, conflicts)
	}
}

func TestUnknownRouteIsJSON404(t *testing.T) {
	d := newDC(t, 0)
	code, body := rawCall(t, d, "GET", "/api/v1/nothing", "", adminToken(t, d))
	if code != 404 || !bytes.Contains([]byte(body), []byte(`"not_found"`)) {
		t.Fatalf("%d %s", code, body)
	}
}

func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	d := newDC(t, 0)
	var doc struct {
		OpenAPI string                               `json:"openapi"`
		Paths   map[string]map[string]map[string]any `json:"paths"`
		Comp    struct {
			Schemas map[string]map[string]any `json:"schemas"`
		} `json:"components"`
	}
	code, body := rawCall(t, d, "GET", "/api/v1/openapi.json", "", adminToken(t, d))
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	for path, methods := range map[string][]string{
		"/api/v1/vms": {"get", "post"}, "/api/v1/vms/{name}": {"get", "patch", "delete"}, "/api/v1/vms/{name}/power": {"post"},
		"/api/v1/hosts/{name}/maintenance": {"post"}, "/api/v1/tasks/{id}": {"get"}, "/api/v1/events": {"get"},
		"/api/v1/portgroups/{name}": {"get", "patch", "delete"}, "/api/v1/agent/join": {"post"}, "/api/v1/agent/renew": {"post"},
		"/api/v1/hosts/{name}/replace": {"post"},
	} {
		for _, m := range methods {
			if doc.Paths[path][m] == nil {
				t.Errorf("openapi.json lacks %s %s", m, path)
			}
		}
	}
	vm := doc.Comp.Schemas["VMCreateRequest"]
	props, _ := vm["properties"].(map[string]any)
	if doc.OpenAPI != "3.0.3" || props["memory"] == nil || props["cpus"] == nil || doc.Comp.Schemas["Task"] == nil {
		t.Fatalf("schemas incomplete: %v", vm)
	}
}
