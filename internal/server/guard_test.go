package server_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/netguard"
	"github.com/vdc-project/vdc/internal/pki"
	"github.com/vdc-project/vdc/internal/server"
)

// What the API's listener does to clients that hold connections without
// authenticating, and what it must not do to those that did.

func apiAddr(d *dc) string { return strings.TrimPrefix(d.srv.URL(), "https://") }

// dialAPI opens an HTTP/1.1 TLS connection, handshake done, and sends
// nothing.
func dialAPI(addr string) (*tls.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	return tls.DialWithDialer(&d, "tcp", addr, pki.Harden(&tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}}))
}

// closedByPeer waits, up to within, for the other end to close c; what it
// sent first is skipped.
func closedByPeer(c net.Conn, within time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(within))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// openNow says whether c is open at this moment: a read finds nothing to
// read rather than the end.
func openNow(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	_ = c.SetReadDeadline(time.Time{})
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// get sends one HTTP/1.1 request on c and reads the answer's status and
// headers (and its body, unless it streams).
func get(t *testing.T, c net.Conn, path, token string) (*http.Response, *bufio.Reader) {
	t.Helper()
	auth := ""
	if token != "" {
		auth = "Authorization: Bearer " + token + "\r\n"
	}
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: vdc\r\n%s\r\n", path, auth); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	if resp.Header.Get("Content-Type") != "text/event-stream" {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return resp, br
}

func TestUnauthenticatedConnectionsPerAddressAreLimited(t *testing.T) {
	const limit = 4
	d := newDC(t, 0, func(c *server.Config) { c.Limits = netguard.Limits{MaxConnsPerIP: limit} })
	addr, tok := apiAddr(d), adminToken(t, d)
	ctx := context.Background()
	if _, err := d.c.Version(ctx); err != nil { // a client that authenticated first
		t.Fatal(err)
	}
	var silent []net.Conn
	for i := 1; i <= limit; i++ {
		c, err := dialAPI(addr)
		if err != nil {
			t.Fatalf("silent connection %d of %d: %v", i, limit, err)
		}
		defer c.Close()
		silent = append(silent, c)
	}
	if c, err := dialAPI(addr); err == nil {
		c.Close()
		t.Fatalf("connection %d from one address, none of them authenticated, was let in", limit+1)
	}
	for i, c := range silent {
		if !openNow(c) {
			t.Fatalf("silent connection %d was closed: it is within the limit", i+1)
		}
	}
	// The client that authenticated keeps working on its connection.
	if _, err := d.c.Version(ctx); err != nil {
		t.Fatalf("an authenticated client while others flood: %v", err)
	}
	for _, c := range silent {
		c.Close()
	}
	eventually(t, 20*time.Second, "a connection let in once the silent ones closed", func() bool {
		c, err := dialAPI(addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	// Connections that authenticated do not count: twice the limit of
	// them, and the limit of silent ones still gets in.
	for i := 1; i <= 2*limit; i++ {
		c, err := dialAPI(addr)
		if err != nil {
			t.Fatalf("connection %d, to authenticate on: %v", i, err)
		}
		defer c.Close()
		if resp, _ := get(t, c, "/api/v1/version", tok); resp.StatusCode != http.StatusOK {
			t.Fatalf("authenticated request on connection %d: %s", i, resp.Status)
		}
	}
	for i := 1; i <= limit; i++ {
		c, err := dialAPI(addr)
		if err != nil {
			t.Fatalf("silent connection %d of %d beside %d authenticated ones: %v", i, limit, 2*limit, err)
		}
		defer c.Close()
	}
	if c, err := dialAPI(addr); err == nil {
		c.Close()
		t.Fatalf("connection %d with nothing authenticated was let in", limit+1)
	}
}

func TestSilentConnectionsAreClosed(t *testing.T) {
	const timeout = 500 * time.Millisecond
	d := newDC(t, 0, func(c *server.Config) {
		c.Limits = netguard.Limits{HeaderTimeout: timeout, IdleTimeout: timeout}
	})
	addr := apiAddr(d)
	raw, err := net.Dial("tcp", addr) // no TLS handshake
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	quiet, err := dialAPI(addr) // a handshake, then nothing
	if err != nil {
		t.Fatal(err)
	}
	defer quiet.Close()
	idle, err := dialAPI(addr) // one request, then nothing
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if resp, _ := get(t, idle, "/healthz", ""); resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("GET /healthz: %s, close %v", resp.Status, resp.Close)
	}
	start := time.Now()
	for _, c := range []struct {
		name string
		c    net.Conn
	}{{"no handshake", raw}, {"handshake only", quiet}, {"idle after a request", idle}} {
		if !closedByPeer(c.c, 30*time.Second) {
			t.Fatalf("%s: still open after 30s (timeouts %s)", c.name, timeout)
		}
	}
	t.Logf("silent connections closed after %s (timeouts %s)", time.Since(start).Round(time.Millisecond), timeout)
	// A request without a token is answered and its connection closed.
	c, err := dialAPI(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp, _ := get(t, c, "/api/v1/vms", "")
	if resp.StatusCode != http.StatusUnauthorized || !resp.Close {
		t.Fatalf("GET /api/v1/vms without a token: %s, close %v; want 401 and the connection closed", resp.Status, resp.Close)
	}
}

// An event stream sends nothing for longer than the idle and header
// timeouts, and stays open: over HTTP/2 (the Go client) and HTTP/1.1.
func TestAuthenticatedStreamsOutliveTheIdleTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	d := newDC(t, 0, func(c *server.Config) {
		c.Limits = netguard.Limits{HeaderTimeout: timeout, IdleTimeout: timeout, BodyIdleTimeout: timeout}
	})
	addr, tok := apiAddr(d), adminToken(t, d)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan string, 16)
	ended := make(chan error, 1)
	go func() {
		ended <- d.c.Events(ctx, client.EventQuery{Kind: api.KindDatacenter}, func(e api.Event) error {
			got <- e.Name
			return nil
		})
	}()
	waitEvent := func(name string) {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for {
			select {
			case n := <-got:
				if n == name {
					return
				}
			case err := <-ended:
				t.Fatalf("HTTP/2 event stream ended: %v", err)
			case <-deadline:
				t.Fatalf("no event for datacenter %s on the HTTP/2 stream in 30s", name)
			}
		}
	}
	// The stream is open once it carries an event.
	d.run(d.c.Create(ctx, api.KindDatacenter, api.DatacenterCreateRequest{Name: "before"}))
	waitEvent("before")
	h1, err := dialAPI(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer h1.Close()
	resp, br := get(t, h1, "/api/v1/events?kind=datacenters", tok)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTP/1.1 event stream: %s", resp.Status)
	}
	// The proof that the timeouts have passed: silent connections opened
	// after the streams, closed by the server, twice in a row.
	for i := 0; i < 2; i++ {
		canary, err := dialAPI(addr)
		if err != nil {
			t.Fatal(err)
		}
		if !closedByPeer(canary, 30*time.Second) {
			t.Fatal("a silent connection was not closed")
		}
		canary.Close()
	}
	d.run(d.c.Create(ctx, api.KindDatacenter, api.DatacenterCreateRequest{Name: "after"}))
	waitEvent("after")
	_ = h1.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("HTTP/1.1 event stream, past the idle timeout: %v", err)
		}
		if strings.HasPrefix(line, "data: ") && strings.Contains(line, `"name":"after"`) {
			break
		}
	}
}

// The API, the agents and the embedded etcd speak TLS 1.2 with
// forward-secret AEAD suites only, or TLS 1.3.
func TestAPIRefusesWeakTLS(t *testing.T) {
	d := newDC(t, 1)
	agentAddr := host(t, d, "host-1").Status.Address
	cbc := []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
		tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_128_GCM_SHA256,
	}
	etcdURL, err := url.Parse(d.srv.EtcdClientURL())
	if err != nil || etcdURL.Host == "" {
		t.Fatalf("the embedded etcd's client URL %q: %v", d.srv.EtcdClientURL(), err)
	}
	for _, target := range []struct{ name, addr string }{{"API", apiAddr(d)}, {"agent API", agentAddr}, {"etcd", etcdURL.Host}} {
		// agreed says whether the server agreed on a version and suite:
		// where a client certificate is required the handshake fails
		// anyway, but only after the server has chosen.
		shake := func(c *tls.Config) (agreed bool, err error) {
			c.InsecureSkipVerify = true
			c.VerifyConnection = func(tls.ConnectionState) error { agreed = true; return nil }
			conn, err := tls.Dial("tcp", target.addr, c)
			if err == nil {
				conn.Close()
			}
			return agreed, err
		}
		if agreed, _ := shake(&tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: cbc}); agreed {
			t.Errorf("%s: agreed with a TLS 1.2 client offering only CBC and non-forward-secret suites", target.name)
		}
		if agreed, _ := shake(&tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}); agreed {
			t.Errorf("%s: agreed with a TLS 1.1 client", target.name)
		}
		if agreed, err := shake(&tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}}); !agreed || target.name == "API" && err != nil {
			t.Errorf("%s: TLS 1.2 with ECDHE-ECDSA-AES128-GCM: agreed %v, %v", target.name, agreed, err)
		}
		if agreed, err := shake(&tls.Config{MinVersion: tls.VersionTLS13}); !agreed || target.name == "API" && err != nil {
			t.Errorf("%s: TLS 1.3: agreed %v, %v", target.name, agreed, err)
		}
	}
}

// The agent API has the same limit: the server's connections, with their
// certificate, do not count.
func TestAgentAPILimitsUnauthenticatedConnections(t *testing.T) {
	d := newDC(t, 0)
	// A long header timeout: a refused connection closes at once, long
	// before a silent one would be timed out.
	d.agentLimits = netguard.Limits{MaxConnsPerIP: 2, HeaderTimeout: time.Minute}
	d.startAgent("host-1")
	d.waitHosts(1)
	ctx := context.Background()
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "a1", CPUs: 1, Memory: api.MustSize("64MiB"), Host: "host-1"}))
	addr := host(t, d, "host-1").Status.Address
	var held []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("silent connection %d: %v", i+1, err)
		}
		defer c.Close()
		held = append(held, c)
	}
	// Refused: reset as it is accepted, which on loopback may be before
	// the dial returns.
	if c, err := net.Dial("tcp", addr); err == nil {
		defer c.Close()
		if !closedByPeer(c, 20*time.Second) {
			t.Fatal("a third silent connection to an agent limited to 2 was not refused")
		}
	}
	if !openNow(held[0]) || !openNow(held[1]) {
		t.Fatal("a silent connection within the agent's limit was closed")
	}
	// The server still reaches the agent meanwhile.
	d.run(d.c.Power(ctx, "a1", api.PowerRequest{Action: api.ActionStart}))
}
