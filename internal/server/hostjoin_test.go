package server_test

import (
	"context"
	"crypto/tls"
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
	"github.com/vdc-project/vdc/internal/server"
)

// hostKeyPair reads a host's key and certificate from its data dir, as
// they are now.
func hostKeyPair(t *testing.T, dataDir string) tls.Certificate {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(filepath.Join(dataDir, "pki", "cert.pem"), filepath.Join(dataDir, "pki", "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

// asHost calls an agent endpoint of the server with a host's certificate.
func asHost(t *testing.T, d *dc, cert tls.Certificate, path, body string) (int, string) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{cert}}}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Post(d.srv.URL()+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func renewBody(t *testing.T) string {
	_, csr, err := pki.NewKeyAndCSR("x")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(api.RenewRequest{CSR: string(csr)})
	return string(b)
}

// joinRaw joins as name with a fresh key, as an agent would.
func joinRaw(t *testing.T, d *dc, token, name string) (int, string) {
	t.Helper()
	_, csr, err := pki.NewKeyAndCSR(name)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(api.JoinRequest{Token: token, Name: name, CSR: string(csr)})
	return rawCall(t, d, "POST", "/api/v1/agent/join", string(b), "")
}

func hostCertRecord(t *testing.T, d *dc, name string) *api.HostCertificate {
	t.Helper()
	c := host(t, d, name).Status.Certificate
	if c == nil {
		t.Fatalf("host %s has no certificate record", name)
	}
	return c
}

// The probe's hole: a join token let anyone take over a disconnected
// host's identity by joining under its name.
func TestJoinAsAnExistingHostIsRefusedAndSpendsNoUse(t *testing.T) {
	d := newDC(t, 2)
	ctx := context.Background()
	tok, err := d.c.CreateJoinToken(ctx, api.JoinTokenRequest{Uses: 2})
	if err != nil {
		t.Fatal(err)
	}
	id2 := host(t, d, "host-2").Metadata.ID
	d.stopAgent("host-2")
	eventually(t, 10*time.Second, "host-2 disconnected", func() bool {
		return host(t, d, "host-2").Status.Connection == api.HostDisconnected
	})
	for _, name := range []string{"host-1", "host-2"} { // connected, and not
		code, body := joinRaw(t, d, tok.Token, name)
		if code != http.StatusConflict || !strings.Contains(body, "vdc host replace "+name) {
			t.Fatalf("join as existing host %s: want 409 pointing at host replace, got %d %s", name, code, body)
		}
	}
	// Both uses are left.
	for _, name := range []string{"new-1", "new-2"} {
		if code, body := joinRaw(t, d, tok.Token, name); code != http.StatusOK {
			t.Fatalf("join as %s after refused joins: %d %s", name, code, body)
		}
	}
	if code, body := joinRaw(t, d, tok.Token, "new-3"); code != http.StatusUnauthorized {
		t.Fatalf("third join with a two-use token: %d %s", code, body)
	}
	if h := host(t, d, "host-2"); h.Metadata.ID != id2 {
		t.Fatalf("host-2 changed ID: %s -> %s", id2, h.Metadata.ID)
	}
	tasks, err := d.c.ListTasks(ctx, client.TaskQuery{Target: "host-2"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range tasks {
		if tk.Op != "host.join" || tk.Owner != "join-token" {
			continue
		}
		var res struct{ Replaced bool }
		_ = json.Unmarshal(tk.Result, &res)
		if res.Replaced {
			t.Fatalf("a refused join was recorded: %+v", tk)
		}
	}
}

// Without a good token, the join answer says nothing about which names
// exist.
func TestBadJoinTokensAnswerAlikeForEveryName(t *testing.T) {
	d := newDC(t, 1)
	ctx := context.Background()
	spent, err := d.c.CreateJoinToken(ctx, api.JoinTokenRequest{Uses: 1})
	if err != nil {
		t.Fatal(err)
	}
	if code, body := joinRaw(t, d, spent.Token, "new-1"); code != http.StatusOK {
		t.Fatalf("join: %d %s", code, body)
	}
	expired, err := d.c.CreateJoinToken(ctx, api.JoinTokenRequest{TTLSeconds: 1})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the short token's expiry", func() bool { return time.Now().After(expired.Expires) })
	fp := strings.Split(d.token, ".")[2]
	secret := strings.Split(d.token, ".")[1]
	bad := map[string]string{
		"empty": "", "garbage": "garbage", "unknown": "vdc1.nope." + fp, "foreign CA": "vdc1." + secret + "." + strings.Repeat("0", 64),
		"no fingerprint": "vdc1." + secret, "used up": spent.Token, "expired": expired.Token,
	}
	for what, tok := range bad {
		c1, b1 := joinRaw(t, d, tok, "host-1")
		c2, b2 := joinRaw(t, d, tok, "no-such-host")
		if c1 != http.StatusUnauthorized || c1 != c2 || b1 != b2 {
			t.Errorf("%s token: existing name %d %s; unknown name %d %s", what, c1, b1, c2, b2)
		}
	}
	if hs, _ := client.List[*api.Host](ctx, d.c, api.KindHost, nil); len(hs) != 2 {
		t.Fatalf("bad tokens changed the hosts: %d", len(hs))
	}
}

func TestHostReplaceRevokesAndTheMachineRejoinsAsTheSameHost(t *testing.T) {
	d := newDC(t, 2)
	ctx := context.Background()
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "v1", CPUs: 1, Memory: api.MustSize("64MiB"), Host: "host-1", PowerOn: true}))
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "v2", CPUs: 1, Memory: api.MustSize("64MiB"), Host: "host-2"}))
	h1 := host(t, d, "host-1")
	old := hostKeyPair(t, d.hostDir("host-1"))
	if c := h1.Status.Certificate; c == nil || c.Serial != pki.Serial(old.Leaf) {
		t.Fatalf("the server does not record host-1's certificate: %+v", c)
	}
	r, err := d.c.ReplaceHost(ctx, "host-1", api.HostReplaceRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Host.ID != h1.Metadata.ID || r.Token.Uses != 1 || time.Until(r.Token.Expires) > time.Hour {
		t.Fatalf("replace answer: %+v", r)
	}
	if tk, err := d.c.GetTask(ctx, r.Task.Metadata.ID); err != nil || tk.Op != "host.replace" || tk.State != api.TaskSucceeded {
		t.Fatalf("replace task: %+v %v", tk, err)
	}
	// Revoked at once: the running agent's heartbeats and renewals.
	if code, body := asHost(t, d, old, "/api/v1/agent/heartbeat", "{}"); code != http.StatusUnauthorized || !strings.Contains(body, "revoked") {
		t.Fatalf("heartbeat with the replaced certificate: %d %s", code, body)
	}
	if code, body := asHost(t, d, old, "/api/v1/agent/renew", renewBody(t)); code != http.StatusUnauthorized {
		t.Fatalf("renewal with the replaced certificate: %d %s", code, body)
	}
	// The token joins as host-1 and nothing else.
	if code, body := joinRaw(t, d, r.Token.Token, "host-9"); code != http.StatusConflict || !strings.Contains(body, `as host \"host-1\" only`) {
		t.Fatalf("replace token used for another name: %d %s", code, body)
	}
	// The machine, data dir and all, comes back with the token: refused
	// its old certificate, the agent joins with it.
	d.stopAgent("host-1")
	d.startAgentIn("host-1", d.hostDir("host-1"), r.Token.Token)
	eventually(t, 20*time.Second, "host-1 back with a new certificate", func() bool {
		h := host(t, d, "host-1")
		c := h.Status.Certificate
		return h.Status.Connection == api.HostConnected && c != nil && c.Serial != "" && c.Serial != pki.Serial(old.Leaf) &&
			h.Status.LastHeartbeat.After(time.Now().Add(-2*time.Second))
	})
	// The agent's files and the server's record agree once the agent has
	// saved what it uses (it may be between the two when first seen).
	eventually(t, 10*time.Second, "host-1's certificate files matching its record", func() bool {
		h := host(t, d, "host-1")
		pair, err := tls.LoadX509KeyPair(filepath.Join(d.hostDir("host-1"), "pki", "cert.pem"), filepath.Join(d.hostDir("host-1"), "pki", "key.pem"))
		return err == nil && h.Metadata.ID == h1.Metadata.ID && h.Status.Certificate.Serial == pki.Serial(pair.Leaf)
	})
	eventually(t, 10*time.Second, "v1 on, on host-1", func() bool {
		vm := d.vm("v1")
		return vm.Status.PowerState == api.PowerOn && vm.Spec.Host.ID == h1.Metadata.ID
	})
	if code, body := asHost(t, d, old, "/api/v1/agent/heartbeat", "{}"); code != http.StatusUnauthorized {
		t.Fatalf("heartbeat with the replaced certificate after the rejoin: %d %s", code, body)
	}
	if code, body := joinRaw(t, d, r.Token.Token, "host-1"); code != http.StatusUnauthorized {
		t.Fatalf("the replace token worked twice: %d %s", code, body)
	}

	// A reinstalled machine (an empty data dir) comes back as host-2. An
	// earlier replace's token is worth nothing after a later one.
	h2 := host(t, d, "host-2")
	first, err := d.c.ReplaceHost(ctx, "host-2", api.HostReplaceRequest{TTLSeconds: 600})
	if err != nil {
		t.Fatal(err)
	}
	r2, err := d.c.ReplaceHost(ctx, "host-2", api.HostReplaceRequest{TTLSeconds: 600})
	if err != nil {
		t.Fatal(err)
	}
	if code, body := joinRaw(t, d, first.Token.Token, "host-2"); code != http.StatusUnauthorized {
		t.Fatalf("a superseded replace token: %d %s", code, body)
	}
	d.stopAgent("host-2")
	d.startAgentIn("host-2", filepath.Join(d.dir, "reinstalled-host-2"), r2.Token.Token)
	eventually(t, 20*time.Second, "host-2 back", func() bool {
		h := host(t, d, "host-2")
		return h.Status.Connection == api.HostConnected && h.Status.Certificate != nil && h.Status.Certificate.Serial != "" &&
			h.Status.LastHeartbeat.After(time.Now().Add(-2*time.Second))
	})
	if h := host(t, d, "host-2"); h.Metadata.ID != h2.Metadata.ID {
		t.Fatalf("reinstalled host-2 got a new ID: %s, was %s", h.Metadata.ID, h2.Metadata.ID)
	}
	if vm := d.vm("v2"); vm.Spec.Host.ID != h2.Metadata.ID {
		t.Fatalf("v2 left host-2: %+v", vm.Spec.Host)
	}
}

func TestRemovedHostsCertificateIsRefused(t *testing.T) {
	d := newDC(t, 1)
	ctx := context.Background()
	old := hostKeyPair(t, d.hostDir("host-1"))
	id := host(t, d, "host-1").Metadata.ID
	d.stopAgent("host-1")
	d.run(d.c.Delete(ctx, api.KindHost, "host-1", nil))
	for _, call := range []struct{ path, body string }{{"/api/v1/agent/heartbeat", "{}"}, {"/api/v1/agent/renew", renewBody(t)}} {
		if code, body := asHost(t, d, old, call.path, call.body); code != http.StatusForbidden || !strings.Contains(body, "removed") {
			t.Fatalf("%s with a removed host's certificate: %d %s", call.path, code, body)
		}
	}
	// A new host of that name is another host: the old certificate stays refused.
	if code, body := joinRaw(t, d, d.token, "host-1"); code != http.StatusOK {
		t.Fatalf("join as a new host-1: %d %s", code, body)
	}
	if h := host(t, d, "host-1"); h.Metadata.ID == id || h.Status.Certificate == nil || h.Status.Certificate.Serial == "" {
		t.Fatalf("the new host-1: ID %s (the removed one's: %s), certificate recorded at the join: %+v", h.Metadata.ID, id, h.Status.Certificate)
	}
	if code, body := asHost(t, d, old, "/api/v1/agent/heartbeat", "{}"); code != http.StatusForbidden {
		t.Fatalf("heartbeat with the removed host's certificate: %d %s", code, body)
	}
}

func TestHostCertificateRenewsItselfAndTheOldOneIsRefused(t *testing.T) {
	const ttl = 20 * time.Second
	d := newDC(t, 1, func(c *server.Config) { c.HostCertTTL = ttl })
	ctx := context.Background()
	dir := d.hostDir("host-1")
	old := hostKeyPair(t, dir)
	orig := hostCertRecord(t, d, "host-1").Serial
	if orig != pki.Serial(old.Leaf) {
		t.Fatalf("recorded serial %s, the host holds %s", orig, pki.Serial(old.Leaf))
	}
	if life := old.Leaf.NotAfter.Sub(old.Leaf.NotBefore); life > ttl+ttl/10+time.Second {
		t.Fatalf("certificate issued for %s, the server's TTL is %s", life, ttl)
	}
	var renewed *api.Host
	eventually(t, 2*ttl, "a renewal, and the host using its new certificate", func() bool {
		h := host(t, d, "host-1")
		c := h.Status.Certificate
		if c != nil && c.Serial != orig && c.Previous == "" {
			renewed = h
			return true
		}
		return false
	})
	if time.Now().After(old.Leaf.NotAfter) {
		t.Fatalf("renewed only after the old certificate expired (%s)", old.Leaf.NotAfter)
	}
	if code, body := asHost(t, d, old, "/api/v1/agent/heartbeat", "{}"); code != http.StatusUnauthorized || !strings.Contains(body, "not the current certificate") {
		t.Fatalf("heartbeat with the certificate renewed away: %d %s", code, body)
	}
	// The agent switched everywhere: its files (0600), QEMU's copy and its API.
	cur := hostKeyPair(t, dir)
	if pki.Serial(cur.Leaf) != renewed.Status.Certificate.Serial {
		t.Fatalf("the agent holds %s, the server expects %s", pki.Serial(cur.Leaf), renewed.Status.Certificate.Serial)
	}
	for _, f := range []string{"pki/key.pem", "pki/cert.pem", "pki/qemu/client-key.pem"} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", f, fi.Mode(), err)
		}
	}
	certPEM, _ := os.ReadFile(filepath.Join(dir, "pki", "cert.pem"))
	if qemuPEM, _ := os.ReadFile(filepath.Join(dir, "pki", "qemu", "client-cert.pem")); string(qemuPEM) != string(certPEM) {
		t.Fatal("QEMU's copy of the certificate was not renewed")
	}
	conn, err := tls.Dial("tcp", renewed.Status.Address, &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{cur}})
	if err != nil {
		t.Fatal(err)
	}
	served := pki.Serial(conn.ConnectionState().PeerCertificates[0])
	conn.Close()
	if served != pki.Serial(cur.Leaf) {
		t.Fatalf("the agent API serves certificate %s, not the renewed %s", served, pki.Serial(cur.Leaf))
	}
	// It keeps heartbeating, and the server keeps calling it.
	beat := renewed.Status.LastHeartbeat
	eventually(t, 10*time.Second, "heartbeats after the renewal", func() bool {
		h := host(t, d, "host-1")
		return h.Status.Connection == api.HostConnected && h.Status.LastHeartbeat.After(beat)
	})
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "after", CPUs: 1, Memory: api.MustSize("64MiB"), Host: "host-1", PowerOn: true}))
	tasks, err := d.c.ListTasks(ctx, client.TaskQuery{Target: "host-1"})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, tk := range tasks {
		found = found || tk.Op == "host.renew-certificate" && tk.State == api.TaskSucceeded
	}
	if !found {
		t.Fatal("no host.renew-certificate task")
	}
}

// A certificate that lives longer than the server now issues them (one
// from before certificates were short-lived, or a lowered --host-cert-ttl)
// is renewed at once, when the server says so.
func TestLongLivedCertificateIsRenewedWhenTheServerAsks(t *testing.T) {
	d := newDC(t, 1)
	old := hostKeyPair(t, d.hostDir("host-1"))
	addr := strings.TrimPrefix(d.srv.URL(), "https://")
	d.srv.Stop()
	d.srv, d.c = startServerAt(t, d.dir, addr, func(c *server.Config) { c.HostCertTTL = time.Hour })
	eventually(t, 20*time.Second, "a renewal to the new policy, in use", func() bool {
		c := host(t, d, "host-1").Status.Certificate
		return c != nil && c.Serial != pki.Serial(old.Leaf) && c.Previous == ""
	})
	if na := hostKeyPair(t, d.hostDir("host-1")).Leaf.NotAfter; na.After(time.Now().Add(time.Hour)) {
		t.Fatalf("renewed certificate valid until %s, past the server's 1h", na)
	}
}
