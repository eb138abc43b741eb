package client

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
)

// A call that records a task, whose answer is lost (the connection drops
// after the server read it), is sent again with the same Idempotency-Key
// and returns the task; a call without a task carries no key (net/http
// may itself send a GET again once on a reused connection).
func TestLostAnswerIsAskedAgainWithTheSameKey(t *testing.T) {
	var mu sync.Mutex
	var keys []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		keys = append(keys, r.Header.Get("Idempotency-Key"))
		n := len(keys)
		mu.Unlock()
		if n == 1 || r.Method == http.MethodGet {
			conn, _, err := w.(http.Hijacker).Hijack() // the answer is lost
			if err == nil {
				conn.Close()
			}
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"metadata":{"id":"task-1"},"op":"vm.create"}`))
	}))
	defer srv.Close()
	// Reads are retried too, so the dropped GET below fails once this
	// runs out.
	c := &Client{base: srv.URL, hc: srv.Client(), RetryFor: 2 * time.Second}
	ctx := context.Background()
	var tk api.Task
	if err := c.Do(ctx, Request{Method: http.MethodPost, Path: "/vms", Body: map[string]string{"name": "v"}}, &tk); err != nil {
		t.Fatalf("create whose first answer was lost: %v", err)
	}
	mu.Lock()
	got := append([]string(nil), keys...)
	keys = nil
	mu.Unlock()
	if tk.Metadata.ID != "task-1" || len(got) != 2 || got[0] == "" || got[0] != got[1] {
		t.Fatalf("task %q after keys %q: want one retry with the first call's key", tk.Metadata.ID, got)
	}
	if err := c.Do(ctx, Request{Method: http.MethodGet, Path: "/vms"}, nil); err == nil {
		t.Fatal("a dropped GET succeeded")
	}
	mu.Lock()
	defer mu.Unlock()
	for _, k := range keys {
		if k != "" {
			t.Fatalf("a call without a task carried Idempotency-Key %q", k)
		}
	}
}
