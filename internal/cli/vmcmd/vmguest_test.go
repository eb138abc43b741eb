package vmcmd

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
	printed := make(chan struct{})
	go func() {
		done <- consoleSession(ctx, ws, gatedReader{in, printed}, &promptWatch{want: "login: ", seen: printed})
	}()
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

// gatedReader types only once the session printed what the VM sent first.
type gatedReader struct {
	r    *strings.Reader
	open <-chan struct{}
}

func (g gatedReader) Read(p []byte) (int, error) {
	<-g.open
	return g.r.Read(p)
}

// promptWatch closes seen once want has been printed.
type promptWatch struct {
	want string
	got  strings.Builder
	seen chan struct{}
}

func (w *promptWatch) Write(p []byte) (int, error) {
	if w.got.Len() < len(w.want) {
		w.got.Write(p)
		if strings.HasPrefix(w.got.String(), w.want) {
			close(w.seen)
		}
	}
	return len(p), nil
}
