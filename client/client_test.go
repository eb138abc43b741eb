package client

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
)

// fakeServer answers with the statuses in order (then 202 with a task),
// recording each attempt's Idempotency-Key.
type fakeServer struct {
	mu       sync.Mutex
	statuses []int
	vdcBody  bool // error answers are vdc error documents
	keys     []string
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.ReadAll(r.Body)
	f.mu.Lock()
	f.keys = append(f.keys, r.Header.Get(IdempotencyHeader))
	var status int
	if len(f.statuses) > 0 {
		status, f.statuses = f.statuses[0], f.statuses[1:]
	}
	f.mu.Unlock()
	switch {
	case status == 0:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprint(w, `{"metadata":{"id":"t1"},"state":"queued"}`)
	case status == -1: // the connection breaks
		panic(http.ErrAbortHandler)
	case f.vdcBody:
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"error":{"code":"unavailable","message":"host h1 is disconnected"}}`)
	default:
		http.Error(w, "bad gateway", status)
	}
}

func newFake(t *testing.T, f *fakeServer) *Client {
	t.Helper()
	srv := httptest.NewTLSServer(f)
	srv.Config.ErrorLog = nil
	t.Cleanup(srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	c, err := New(Config{Server: srv.URL, CA: string(ca), Token: "x"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCreatingCallsRetryWithOneKey(t *testing.T) {
	f := &fakeServer{statuses: []int{-1, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout}}
	c := newFake(t, f)
	task, err := c.CreateVM(context.Background(), api.VMCreateRequest{Name: "v"})
	if err != nil || task.Metadata.ID != "t1" {
		t.Fatalf("create through a broken connection and three proxy errors: %v %+v", err, task)
	}
	if len(f.keys) != 5 || f.keys[0] == "" {
		t.Fatalf("attempts sent keys %q, want 5 attempts with one key", f.keys)
	}
	for _, k := range f.keys {
		if k != f.keys[0] {
			t.Fatalf("attempts sent different keys: %q", f.keys)
		}
	}
	// A second call is another logical call: another key.
	if _, err := c.CreateVM(context.Background(), api.VMCreateRequest{Name: "w"}); err != nil {
		t.Fatal(err)
	}
	if last := f.keys[len(f.keys)-1]; last == f.keys[0] {
		t.Fatalf("two calls sent the same key %q", last)
	}
}

func TestWhatIsNotRetried(t *testing.T) {
	// vdc's own 503 (a host is down) is an answer, not a passing fault.
	f := &fakeServer{statuses: []int{http.StatusServiceUnavailable}, vdcBody: true}
	c := newFake(t, f)
	if _, err := c.CreateVM(context.Background(), api.VMCreateRequest{Name: "v"}); !errors.Is(err, api.ErrUnavailable) || len(f.keys) != 1 {
		t.Fatalf("vdc's 503: %v after %d attempts, want it after 1", err, len(f.keys))
	}
	// A call without a key is not sent again once it may have arrived.
	f = &fakeServer{statuses: []int{-1}}
	c = newFake(t, f)
	if err := c.Do(context.Background(), Request{Method: http.MethodPost, Path: "/vms/v/exec", Body: map[string]any{}}, nil); err == nil || len(f.keys) != 1 || f.keys[0] != "" {
		t.Fatalf("exec through a broken connection: %v after %d attempts (keys %q), want a failure after 1 without a key", err, len(f.keys), f.keys)
	}
	// Reads are retried, without a key.
	f = &fakeServer{statuses: []int{-1, http.StatusBadGateway}}
	c = newFake(t, f)
	if _, err := c.Version(context.Background()); err != nil || len(f.keys) != 3 || f.keys[2] != "" {
		t.Fatalf("version: %v after %d attempts (keys %q)", err, len(f.keys), f.keys)
	}
}

func TestRetriesAreBounded(t *testing.T) {
	f := &fakeServer{statuses: make([]int, 1000)}
	for i := range f.statuses {
		f.statuses[i] = http.StatusServiceUnavailable
	}
	c := newFake(t, f).WithRetry(time.Second)
	start := time.Now()
	_, err := c.CreateVM(context.Background(), api.VMCreateRequest{Name: "v"})
	took := time.Since(start)
	if !errors.Is(err, api.ErrUnavailable) {
		t.Fatalf("always 503: %v", err)
	}
	if took > 10*time.Second || len(f.keys) < 2 {
		t.Fatalf("always 503 with a 1s budget: gave up after %s and %d attempts", took, len(f.keys))
	}
	t.Logf("gave up after %s and %d attempts", took.Round(time.Millisecond), len(f.keys))
	// Nobody listening: refused connections are retried for any call.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c2, err := New(Config{Server: "https://" + addr})
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	err = c2.WithRetry(500*time.Millisecond).Do(context.Background(), Request{Method: http.MethodPost, Path: "/vms/v/exec"}, nil)
	if err == nil || time.Since(start) < 100*time.Millisecond {
		t.Fatalf("a refused connection: %v after %s, want retries then a failure", err, time.Since(start))
	}
}
