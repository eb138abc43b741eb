package cli

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// The console session relays both ways and ends at Ctrl-], sending what
// came before it but not what came after.
func TestConsoleSessionDetachKey(t *testing.T) {
	got := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer ws.CloseNow()
		ctx := r.Context()
		_ = ws.Write(ctx, websocket.MessageBinary, []byte("login: "))
		var all bytes.Buffer
		for {
			_, b, err := ws.Read(ctx)
			if err != nil {
				got <- all.String()
				return
			}
			all.Write(b)
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	in := strings.NewReader("root\n\x1dnot this")
	done := make(chan error, 1)
	go func() { done <- consoleSession(ctx, ws, slowReader{in}, discard{}) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("session: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("Ctrl-] did not end the session")
	}
	if s := <-got; s != "root\n" {
		t.Fatalf("the VM got %q, want what was typed before Ctrl-]", s)
	}
}

// slowReader gives the session time to print what the VM sent first.
type slowReader struct{ r *strings.Reader }

func (s slowReader) Read(p []byte) (int, error) {
	time.Sleep(50 * time.Millisecond)
	return s.r.Read(p)
}
