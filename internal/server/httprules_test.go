package server_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/pki"
)

// raw sends a request as the given bearer token (the admin's when empty)
// with body as is, and returns the status and body.
func raw(t *testing.T, d *dc, token, method, path, body string, headers ...string) (int, string) {
	t.Helper()
	cc, err := client.LoadConfig(d.srv.ClientConfigPath())
	if err != nil {
		t.Fatal(err)
	}
	if token == "" {
		token = cc.Token
	}
	pool, err := pki.PoolFromPEM([]byte(cc.CA))
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	defer hc.CloseIdleConnections()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, d.srv.URL()+path, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A body that is not a JSON object is a 400 and changes nothing, instead of
// passing as an empty change.
func TestBodiesThatAreNotObjectsAre400(t *testing.T) {
	d := newDC(t, 1)
	ctx := context.Background()
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "v1", CPUs: 1, Memory: api.MustSize("64MiB")}))
	before := d.vm("v1")
	for _, body := range []string{"null", " null ", "[]", `"x"`, "1", ""} {
		code, msg := raw(t, d, "", "PATCH", "/api/v1/vms/v1", body)
		if code != http.StatusBadRequest || !strings.Contains(msg, "JSON object") {
			t.Errorf("PATCH with body %q: %d %s, want 400 asking for a JSON object", body, code, msg)
		}
	}
	if code, msg := raw(t, d, "", "POST", "/api/v1/vms", "null"); code != http.StatusBadRequest {
		t.Errorf("POST /vms with null: %d %s", code, msg)
	}
	if after := d.vm("v1"); after.Metadata.Generation != before.Metadata.Generation {
		t.Fatalf("a refused body changed the VM: generation %d -> %d", before.Metadata.Generation, after.Metadata.Generation)
	}
}

// List filters are checked: a value outside the allowed ones, or a
// parameter the route does not take, is a 400 naming it.
func TestListQueryParametersAreChecked(t *testing.T) {
	d := newDC(t, 1)
	if code, msg := raw(t, d, "", "GET", "/api/v1/vms?power=bogus", ""); code != http.StatusBadRequest || !strings.Contains(msg, "power") {
		t.Errorf("GET /vms?power=bogus: %d %s, want 400 naming power", code, msg)
	}
	if code, msg := raw(t, d, "", "GET", "/api/v1/vms?colour=red", ""); code != http.StatusBadRequest || !strings.Contains(msg, "colour") {
		t.Errorf("GET /vms?colour=red: %d %s, want 400 naming colour", code, msg)
	}
	if code, msg := raw(t, d, "", "GET", "/api/v1/vms?power=on", ""); code != http.StatusOK {
		t.Errorf("GET /vms?power=on: %d %s", code, msg)
	}
}

// A token deleted from the store (through etcd) stops working at once, not after a cache
// window.
func TestTokenDeletedFromTheStoreIsRefusedAtOnce(t *testing.T) {
	d := newDC(t, 0)
	pkiDir := filepath.Join(d.dir, "server", "pki")
	caPEM, err := os.ReadFile(filepath.Join(pkiDir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	member, err := tls.LoadX509KeyPair(filepath.Join(pkiDir, "etcd.crt"), filepath.Join(pkiDir, "etcd.key"))
	if err != nil {
		t.Fatal(err)
	}
	etcd := etcdClient(t, d.srv.EtcdClientURL(), caPEM, member)
	const secret = "vdct.deleted-token-test"
	sum := sha256.Sum256([]byte(secret))
	key := "/vdc/sys/tokens/" + hex.EncodeToString(sum[:])
	ctx := context.Background()
	if _, err := etcd.Put(ctx, key, `{"user":"ops","role":"admin","created":"2026-01-01T00:00:00Z"}`); err != nil {
		t.Fatal(err)
	}
	eventuallyCode := func(want int, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			code, _ := raw(t, d, secret, "GET", "/api/v1/tasks", "")
			if code == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("token answered %d, want %d within %s", code, want, within)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	eventuallyCode(http.StatusOK, 5*time.Second)
	// Used again: now it is remembered.
	if code, _ := raw(t, d, secret, "GET", "/api/v1/tasks", ""); code != http.StatusOK {
		t.Fatalf("token refused on its second use: %d", code)
	}
	if _, err := etcd.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	eventuallyCode(http.StatusUnauthorized, time.Second)
}

// A create sent again with the same Idempotency-Key (a client that lost
// the answer) returns the first call's task and makes nothing twice; the
// key with another request is refused.
func TestIdempotencyKeyReturnsTheFirstTask(t *testing.T) {
	d := newDC(t, 1)
	body := `{"name":"i1","cpus":1,"memory":"64MiB"}`
	code1, first := raw(t, d, "", "POST", "/api/v1/vms", body, "Idempotency-Key", "k-1")
	code2, again := raw(t, d, "", "POST", "/api/v1/vms", body, "Idempotency-Key", "k-1")
	if code1 >= 300 || code2 != code1 {
		t.Fatalf("create, then again with its key: %d %s / %d %s", code1, first, code2, again)
	}
	var t1, t2 api.Task
	if err := json.Unmarshal([]byte(first), &t1); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(again), &t2); err != nil {
		t.Fatal(err)
	}
	if t1.Metadata.ID == "" || t1.Metadata.ID != t2.Metadata.ID {
		t.Fatalf("the repeat got task %q, the first %q", t2.Metadata.ID, t1.Metadata.ID)
	}
	vms, err := client.List[*api.VM](context.Background(), d.c, api.KindVM, nil)
	if err != nil || len(vms) != 1 {
		t.Fatalf("VMs after a repeated create: %d (%v)", len(vms), err)
	}
	if code, msg := raw(t, d, "", "POST", "/api/v1/vms", `{"name":"i2","cpus":1,"memory":"64MiB"}`, "Idempotency-Key", "k-1"); code != http.StatusUnprocessableEntity {
		t.Fatalf("the key with another request: %d %s, want 422", code, msg)
	}
	if _, err := d.c.GetVM(context.Background(), "i2"); err == nil {
		t.Fatal("a refused repeat made its VM")
	}
}
