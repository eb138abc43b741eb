package netguard

import (
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// Server returns an http.Server with the limits' timeouts, for a Listener
// made with the same limits. There is deliberately no WriteTimeout and no
// whole-request ReadTimeout: event streams, long polls, consoles and
// multi-GB transfers run as long as they make progress. What bounds a
// client that sends nothing is the header timeout (TLS handshake included),
// the idle timeout between requests, and the body inactivity timeout.
func (l Limits) Server(h http.Handler, log *slog.Logger) *http.Server {
	l = l.WithDefaults()
	srv := &http.Server{
		Handler:           l.GuardBody(h),
		ReadHeaderTimeout: l.HeaderTimeout,
		IdleTimeout:       l.IdleTimeout,
		ConnContext:       ConnContext,
	}
	if log != nil {
		srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	}
	return srv
}

// GuardBody fails a request whose body sends nothing for BodyIdleTimeout:
// before each read of the body the read deadline moves that far ahead, and
// once the body has been read it is cleared again, so that what the
// handler does afterwards (stream an answer, wait for a task) has no
// deadline. Over HTTP/1 the deadline is also set before the handler runs
// and left set when it returns without reading the whole body: the server
// then reads what is left to reuse the connection, and a client that sends
// nothing must not hold it there.
func (l Limits) GuardBody(next http.Handler) http.Handler {
	d := l.WithDefaults().BodyIdleTimeout
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		b := &idleBody{ReadCloser: r.Body, rc: http.NewResponseController(w), d: d, h1: r.ProtoMajor == 1}
		if b.h1 {
			_ = b.rc.SetReadDeadline(time.Now().Add(d))
		}
		// A shallow copy: the server keeps its own request, whose body it
		// knows how to drain.
		r2 := *r
		r2.Body = b
		defer b.finish(false)
		next.ServeHTTP(w, &r2)
	})
}

type idleBody struct {
	io.ReadCloser
	rc *http.ResponseController
	d  time.Duration
	h1 bool

	mu sync.Mutex
	// off once the body ended or the handler returned: the response
	// controller must not be used after that.
	off bool
}

func (b *idleBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	if !b.off {
		_ = b.rc.SetReadDeadline(time.Now().Add(b.d))
	}
	b.mu.Unlock()
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.finish(true)
	}
	return n, err
}

// finish clears the deadline once the body has ended: the server's own
// read of the connection, which watches for the client going away while
// the handler runs, must not time out. A body left unread keeps one.
func (b *idleBody) finish(ended bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.off {
		return
	}
	b.off = true
	if ended || !b.h1 {
		_ = b.rc.SetReadDeadline(time.Time{})
	} else {
		_ = b.rc.SetReadDeadline(time.Now().Add(b.d))
	}
}
