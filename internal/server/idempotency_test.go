package server_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/server"
)

// keyedCall sends a body with an Idempotency-Key and returns the status,
// whether the server said it replayed, and the body.
func keyedCall(t *testing.T, d *dc, method, path, body, token, key string) (int, bool, string) {
	t.Helper()
	req, _ := http.NewRequest(method, d.srv.URL()+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Idempotency-Key", key)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Idempotent-Replayed") == "true", string(b)
}

// createTasks lists the vm.create tasks of a VM name.
func createTasks(t *testing.T, d *dc, c *client.Client, name string) []*api.Task {
	t.Helper()
	ts, err := c.ListTasks(context.Background(), client.TaskQuery{Target: name})
	if err != nil {
		t.Fatal(err)
	}
	var out []*api.Task
	for _, x := range ts {
		if x.Op == "vm.create" && x.Target.Name == name {
			out = append(out, x)
		}
	}
	return out
}

func TestIdempotencyKeyAnswersARepeatWithTheFirstTask(t *testing.T) {
	d := newDC(t, 1)
	ctx := context.Background()
	tok := adminToken(t, d)
	body := `{"name":"i1","cpus":1,"memory":"64MiB"}`
	code1, replayed1, b1 := keyedCall(t, d, "POST", "/api/v1/vms", body, tok, "key-1")
	var t1, t2 api.Task
	if err := json.Unmarshal([]byte(b1), &t1); err != nil || code1 != http.StatusAccepted || replayed1 {
		t.Fatalf("first create: %d replayed=%v %s", code1, replayed1, b1)
	}
	code2, replayed2, b2 := keyedCall(t, d, "POST", "/api/v1/vms", body, tok, "key-1")
	if err := json.Unmarshal([]byte(b2), &t2); err != nil || code2 != code1 || !replayed2 || t2.Metadata.ID != t1.Metadata.ID {
		t.Fatalf("repeat: %d replayed=%v task %s, want %d with task %s: %s", code2, replayed2, t2.Metadata.ID, code1, t1.Metadata.ID, b2)
	}
	// Many at once with one key: one VM, one task, the same answer.
	var wg sync.WaitGroup
	ids := make([]string, 8)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, _, b := keyedCall(t, d, "POST", "/api/v1/vms", `{"name":"i2","cpus":1,"memory":"64MiB"}`, tok, "key-2")
			var x api.Task
			if json.Unmarshal([]byte(b), &x) != nil || code != http.StatusAccepted {
				t.Errorf("concurrent create with one key: %d %s", code, b)
			}
			ids[i] = x.Metadata.ID
		}()
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("concurrent creates with one key got different tasks: %v", ids)
		}
	}
	if n := vmCount(t, d); n != 2 {
		t.Fatalf("%d VMs, want 2 (i1, i2)", n)
	}
	for _, name := range []string{"i1", "i2"} {
		if ts := createTasks(t, d, d.c, name); len(ts) != 1 {
			t.Fatalf("%d vm.create tasks for %s, want 1", len(ts), name)
		}
	}
	// The key with another request: refused, nothing done.
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/api/v1/vms", `{"name":"i3","cpus":1,"memory":"64MiB"}`},
		{"POST", "/api/v1/datacenters", `{"name":"dc9"}`},
	} {
		code, _, b := keyedCall(t, d, c.method, c.path, c.body, tok, "key-1")
		if code != http.StatusUnprocessableEntity || !strings.Contains(b, "already used") || !strings.Contains(b, "different request") {
			t.Errorf("key-1 with %s %s %s: %d %s; want 422", c.method, c.path, c.body, code, b)
		}
	}
	if n := vmCount(t, d); n != 2 {
		t.Fatalf("a refused key made a VM: %d VMs", n)
	}
	if _, err := client.Get[*api.Datacenter](ctx, d.c, api.KindDatacenter, "dc9"); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("a refused key made a datacenter: %v", err)
	}
	// Keys belong to their user: another's same key and body is a new
	// request (here, a name already taken), never the first one's answer.
	other, err := d.c.CreateToken(ctx, api.TokenCreateRequest{User: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	d.permit("root", "bob", "Administrator", true)
	if code, replayed, b := keyedCall(t, d, "POST", "/api/v1/vms", body, other.Token, "key-1"); code != http.StatusConflict || replayed {
		t.Fatalf("bob with admin's key and body: %d replayed=%v %s; want 409 (i1 exists)", code, replayed, b)
	}
	// Calls that record nothing to answer from refuse the header.
	if code, _, b := keyedCall(t, d, "POST", "/api/v1/tasks/"+t1.Metadata.ID+"/cancel", "", tok, "key-9"); code != http.StatusBadRequest || !strings.Contains(b, "does not take an Idempotency-Key") {
		t.Fatalf("cancel with a key: %d %s", code, b)
	}
	if code, _, b := keyedCall(t, d, "POST", "/api/v1/vms", body, tok, "a key with spaces"); code != http.StatusBadRequest {
		t.Fatalf("a key with spaces: %d %s", code, b)
	}
}

// Token calls record no task: the repeat gets the first answer, secret
// included, which etcd keeps sealed.
func TestIdempotencyKeyRepeatsTokenAnswers(t *testing.T) {
	d := newDC(t, 0)
	ctx := context.Background()
	tok := adminToken(t, d)
	for _, path := range []string{"/api/v1/join-tokens", "/api/v1/tokens"} {
		key := "tok-" + path
		code1, _, b1 := keyedCall(t, d, "POST", path, `{}`, tok, key)
		code2, replayed, b2 := keyedCall(t, d, "POST", path, `{}`, tok, key)
		if code1 != http.StatusCreated || code2 != http.StatusCreated || !replayed || b1 != b2 {
			t.Fatalf("%s twice with one key: %d %s, then %d replayed=%v %s", path, code1, b1, code2, replayed, b2)
		}
		var answer struct{ Token string }
		if err := json.Unmarshal([]byte(b1), &answer); err != nil || answer.Token == "" {
			t.Fatalf("%s: %s", path, b1)
		}
		resp, err := d.srv.EtcdForTest().Get(ctx, server.IdempotencyPrefixForTest, clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range resp.Kvs {
			if strings.Contains(string(kv.Value), answer.Token) || strings.Contains(string(kv.Value), strings.Split(answer.Token, ".")[1]) {
				t.Fatalf("the secret of %s is readable in etcd under %s", path, kv.Key)
			}
		}
	}
	ts, err := d.c.ListTokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 2 {
		t.Fatalf("%d API tokens, want 2 (admin, and one from two calls with one key)", len(ts))
	}
}

// The server does the work and the answer is lost (the connection
// breaks): the client sends the call again with the same key and gets the
// first answer, not a 409 for the VM it made itself.
func TestLostAnswersAreRetriedWithTheSameKey(t *testing.T) {
	d := newDC(t, 1)
	ctx := context.Background()
	var creates, dropped atomic.Int32
	d.srv.DropAnswersForTest(func(method, path string) bool {
		if method != "POST" || path != "/api/v1/vms" {
			return false
		}
		if creates.Add(1)%2 == 1 { // every first attempt
			dropped.Add(1)
			return true
		}
		return false
	})
	for i := 0; i < 6; i++ {
		name := fmt.Sprintf("l%d", i)
		task, err := d.c.CreateVM(ctx, api.VMCreateRequest{Name: name, CPUs: 1, Memory: api.MustSize("64MiB")})
		if err != nil {
			t.Fatalf("create %s with its first answer lost: %v", name, err)
		}
		ts := createTasks(t, d, d.c, name)
		if len(ts) != 1 || ts[0].Metadata.ID != task.Metadata.ID {
			t.Fatalf("create %s: answered task %s, recorded %d vm.create tasks", name, task.Metadata.ID, len(ts))
		}
	}
	if dropped.Load() != 6 || vmCount(t, d) != 6 {
		t.Fatalf("%d answers lost, %d VMs; want 6 and 6", dropped.Load(), vmCount(t, d))
	}
}

// A create loop across a server restart, the server dying after it made
// a VM and before it answered: each create the client reports done made
// its VM once, and no VM exists whose create the client reports failed.
func TestCreateLoopAcrossAServerRestart(t *testing.T) {
	d := newDC(t, 1)
	c := d.c // the loop's client: the same URL, token and CA after the restart
	const n, dieAt = 30, 5
	var creates atomic.Int32
	died := make(chan struct{})
	d.srv.DropAnswersForTest(func(method, path string) bool {
		if method == "POST" && path == "/api/v1/vms" && creates.Add(1) == dieAt {
			close(died)
			return true
		}
		return false
	})
	type result struct {
		task string
		err  error
	}
	results := make([]result, n)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < n; i++ {
			// As the CLI does: the create, then its task.
			task, err := c.CreateVM(context.Background(), api.VMCreateRequest{Name: fmt.Sprintf("r%02d", i), CPUs: 1, Memory: api.MustSize("64MiB")})
			if err == nil {
				_, err = c.Wait(context.Background(), task)
			}
			results[i] = result{err: err}
			if err == nil {
				results[i].task = task.Metadata.ID
			}
		}
	}()
	<-died
	addr := apiAddr(d)
	stopped := time.Now()
	d.srv.Stop()
	d.srv, d.c = startServerAt(t, d.dir, addr)
	t.Logf("server back after %s", time.Since(stopped).Round(time.Millisecond))
	<-done
	failed := 0
	for i, r := range results {
		name := fmt.Sprintf("r%02d", i)
		ts := createTasks(t, d, d.c, name)
		_, gerr := d.c.GetVM(context.Background(), name)
		if r.err != nil {
			failed++
			t.Logf("create %s failed: %v", name, r.err)
			if gerr == nil || len(ts) != 0 {
				t.Errorf("create %s reported failed (%v), yet the VM exists (%v) or %d create tasks do", name, r.err, gerr, len(ts))
			}
			continue
		}
		if gerr != nil || len(ts) != 1 || ts[0].Metadata.ID != r.task {
			t.Errorf("create %s reported task %s: VM %v, %d create tasks", name, r.task, gerr, len(ts))
			for _, x := range ts {
				t.Logf("task %s: %s %s %+v", x.Metadata.ID, x.State, x.Message, x.Error)
			}
		}
	}
	t.Logf("%d of %d creates failed across the restart", failed, n)
}
