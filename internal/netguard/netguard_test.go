package netguard_test

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/internal/netguard"
	"github.com/vdc-project/vdc/internal/pki"
)

// closedByPeer waits (up to within) for the server to close c and says
// whether it did; data the server sent first is skipped.
func closedByPeer(c net.Conn, within time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(within))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

func TestListenerLimitsUntrustedConnectionsPerIP(t *testing.T) {
	ln, err := netguard.Listen("127.0.0.1:0", netguard.Limits{MaxConnsPerIP: 3}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan *netguard.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c.(*netguard.Conn)
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// refused dials one connection too many: it is reset as it is
	// accepted, which on loopback may be before the dial returns.
	refused := func() bool {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return true
		}
		defer c.Close()
		return closedByPeer(c, 5*time.Second)
	}
	var held []*netguard.Conn
	for i := 0; i < 3; i++ {
		dial()
		held = append(held, <-accepted)
	}
	if n := ln.Open("127.0.0.1"); n != 3 {
		t.Fatalf("%d connections counted, want 3", n)
	}
	if !refused() {
		t.Fatal("a fourth connection from one address was not refused")
	}
	// An authenticated connection stops counting; a closed one too.
	held[0].Trust()
	dial()
	held = append(held, <-accepted)
	held[1].Close()
	dial()
	<-accepted
	if n := ln.Open("127.0.0.1"); n != 3 {
		t.Fatalf("%d connections counted, want 3 (2 held, 1 new; 1 trusted, 1 closed)", n)
	}
	if !refused() {
		t.Fatal("a connection over the limit was not refused")
	}
	held[0].Close() // trusted: closing it must not free a slot twice
	if n := ln.Open("127.0.0.1"); n != 3 {
		t.Fatalf("%d connections counted after closing a trusted one, want 3", n)
	}
}

// server serves h over TLS (HTTP/2 and HTTP/1.1) with limits.
func server(t *testing.T, lim netguard.Limits, h http.Handler) (addr string, pool *tls.Config) {
	t.Helper()
	ca, _, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue(pki.Names{CN: "test", DNS: []string{"localhost"}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := netguard.Listen("127.0.0.1:0", lim, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := lim.Server(h, nil)
	srv.TLSConfig = pki.Harden(&tls.Config{Certificates: []tls.Certificate{cert}})
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), pki.Harden(&tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"})
}

func TestSilentConnectionsAreClosed(t *testing.T) {
	lim := netguard.Limits{HeaderTimeout: 300 * time.Millisecond, IdleTimeout: 300 * time.Millisecond}
	addr, tc := server(t, lim, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	// No handshake at all.
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	// A handshake, then nothing; over HTTP/2 the client preface, then
	// nothing. (An HTTP/2 client that does not even send the preface is
	// dropped after Go's fixed 10 s.)
	var silent []net.Conn
	for _, proto := range []string{"http/1.1", "h2"} {
		c := tc.Clone()
		c.NextProtos = []string{proto}
		tlsc, err := tls.Dial("tcp", addr, c)
		if err != nil {
			t.Fatal(err)
		}
		defer tlsc.Close()
		if proto == "h2" {
			io.WriteString(tlsc, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
		}
		silent = append(silent, tlsc)
	}
	// One request, then idle on the keep-alive connection.
	ka, err := tls.Dial("tcp", addr, func() *tls.Config { c := tc.Clone(); c.NextProtos = []string{"http/1.1"}; return c }())
	if err != nil {
		t.Fatal(err)
	}
	defer ka.Close()
	fmt.Fprintf(ka, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	start := time.Now()
	for i, c := range append([]net.Conn{raw, ka}, silent...) {
		if !closedByPeer(c, 5*time.Second) {
			t.Fatalf("connection %d still open after 5s", i)
		}
	}
	t.Logf("all silent connections closed within %s", time.Since(start).Round(time.Millisecond))
}

// slowBody sends n bytes, one every gap, then stalls forever if stall.
type slowBody struct {
	n     int
	gap   time.Duration
	stall chan struct{}
}

func (b *slowBody) Read(p []byte) (int, error) {
	if b.n == 0 {
		if b.stall != nil {
			<-b.stall
			return 0, errors.New("stalled")
		}
		return 0, io.EOF
	}
	time.Sleep(b.gap) // a slow client: the test's input, not a wait
	b.n--
	p[0] = 'x'
	return 1, nil
}

func TestBodyInactivityCutsStalledUploadsOnly(t *testing.T) {
	const idle = 300 * time.Millisecond
	lim := netguard.Limits{BodyIdleTimeout: idle}
	answered := make(chan error, 4)
	addr, tc := server(t, lim, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			answered <- err
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		// After the body, a long answer with no client data: the request
		// must stay alive (as event streams and long polls do).
		w.WriteHeader(http.StatusOK)
		for i := 0; i < 4; i++ {
			select {
			case <-r.Context().Done():
				answered <- r.Context().Err()
				return
			case <-time.After(idle): // paces the answer
			}
			fmt.Fprintf(w, "%d ", i)
			http.NewResponseController(w).Flush()
		}
		fmt.Fprintf(w, "got %d", n)
		answered <- nil
	}))
	for _, h2 := range []bool{false, true} {
		name := map[bool]string{false: "HTTP/1.1", true: "HTTP/2"}[h2]
		tr := &http.Transport{TLSClientConfig: tc.Clone(), ForceAttemptHTTP2: h2}
		if !h2 {
			tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		hc := &http.Client{Transport: tr}
		// Slow but steady: 8 bytes over 8 × idle/3, longer than idle.
		req, _ := http.NewRequest("PUT", "https://"+addr+"/", &slowBody{n: 8, gap: idle / 3})
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s: slow upload: %v", name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err := <-answered; err != nil || resp.ProtoMajor != map[bool]int{false: 1, true: 2}[h2] || !strings.HasSuffix(string(b), "got 8") {
			t.Fatalf("%s: slow upload: %v %s %q", name, err, resp.Proto, b)
		}
		// Stalled: cut after idle.
		stall := make(chan struct{})
		req, _ = http.NewRequest("PUT", "https://"+addr+"/", &slowBody{n: 2, gap: time.Millisecond, stall: stall})
		start := time.Now()
		go func() {
			// Nothing cuts it without the guard; end it to fail cleanly.
			select {
			case <-stall:
			case <-time.After(10 * time.Second):
				answered <- errors.New("still reading the body after 10s")
			}
		}()
		resp, err = hc.Do(req)
		herr := <-answered
		close(stall)
		if err == nil {
			resp.Body.Close()
		}
		if herr == nil || !errors.Is(herr, os.ErrDeadlineExceeded) {
			t.Fatalf("%s: stalled upload: handler saw %v", name, herr)
		}
		t.Logf("%s: stalled upload cut after %s", name, time.Since(start).Round(time.Millisecond))
		tr.CloseIdleConnections()
	}
}

func TestUnreadBodyDoesNotHoldTheConnection(t *testing.T) {
	lim := netguard.Limits{BodyIdleTimeout: 300 * time.Millisecond, IdleTimeout: time.Minute}
	addr, tc := server(t, lim, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusUnauthorized) // never reads the body
	}))
	c := tc.Clone()
	c.NextProtos = []string{"http/1.1"}
	conn, err := tls.Dial("tcp", addr, c)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Promises 1000 bytes, sends 10.
	fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n%s", bytes.Repeat([]byte("x"), 10))
	if !closedByPeer(conn, 5*time.Second) {
		t.Fatal("a request body that stalls after the answer holds the connection")
	}
}
