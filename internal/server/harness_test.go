package server_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/agent"
	"github.com/vdc-project/vdc/internal/hypervisor/sim"
	"github.com/vdc-project/vdc/internal/netguard"
	"github.com/vdc-project/vdc/internal/server"
)

// dc is a datacenter running in the test process: a real server on a real
// embedded etcd, and real agents with sim drivers, talking mutual TLS.
type dc struct {
	t      *testing.T
	dir    string
	srv    *server.Server
	c      *client.Client
	agents map[string]context.CancelFunc
	token  string
	// agentConfig, when set, changes the configuration of agents started
	// from then on.
	agentConfig func(*agent.Config)
	// agentLimits are the limits of the agents started from now on.
	agentLimits netguard.Limits
}

func testLog(t *testing.T) *slog.Logger {
	if os.Getenv("VDC_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func startServer(t *testing.T, dir string, opts ...func(*server.Config)) (*server.Server, *client.Client) {
	return startServerAt(t, dir, "127.0.0.1:0", opts...)
}

// startServerAt starts a server listening on addr: again where the last
// one listened, for agents to find it after a restart. opts change its
// configuration.
func startServerAt(t *testing.T, dir, addr string, opts ...func(*server.Config)) (*server.Server, *client.Client) {
	t.Helper()
	cfg := server.Config{DataDir: filepath.Join(dir, "server"), Listen: addr, Name: "test",
		HeartbeatInterval: time.Second, HostTimeout: 3 * time.Second, Log: testLog(t)}
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	c, err := client.FromFile(srv.ClientConfigPath())
	if err != nil {
		t.Fatal(err)
	}
	return srv, c
}

// newDC starts a server with dc1/cluster1/datastore1/vm-network and hosts;
// opts change the server's configuration.
func newDC(t *testing.T, hosts int, opts ...func(*server.Config)) *dc {
	t.Helper()
	return newDCWith(t, hosts, nil, opts...)
}

// newDCWith is newDC with agentConfig set before the first agent starts.
func newDCWith(t *testing.T, hosts int, agentConfig func(*agent.Config), opts ...func(*server.Config)) *dc {
	t.Helper()
	d := &dc{t: t, dir: t.TempDir(), agents: map[string]context.CancelFunc{}, agentConfig: agentConfig}
	d.srv, d.c = startServer(t, d.dir, opts...)
	t.Cleanup(func() {
		for _, stop := range d.agents {
			stop()
		}
		d.srv.Stop()
	})
	ctx := context.Background()
	d.run(d.c.Create(ctx, api.KindDatacenter, api.DatacenterCreateRequest{Name: "dc1"}))
	d.run(d.c.Create(ctx, api.KindCluster, api.ClusterCreateRequest{Name: "cluster1"}))
	dsPath := filepath.Join(d.dir, "datastore1")
	os.MkdirAll(dsPath, 0o755)
	d.run(d.c.Create(ctx, api.KindDatastore, api.DatastoreCreateRequest{Name: "datastore1", Path: dsPath}))
	d.run(d.c.Create(ctx, api.KindPortGroup, api.PortGroupCreateRequest{Name: "vm-network"}))
	tok, err := d.c.CreateJoinToken(ctx, api.JoinTokenRequest{Uses: 100})
	if err != nil {
		t.Fatal(err)
	}
	d.token = tok.Token
	for i := 1; i <= hosts; i++ {
		d.startAgent(fmt.Sprintf("host-%d", i))
	}
	d.waitHosts(hosts)
	return d
}

// startAgent runs a host agent (again) on its data dir.
func (d *dc) startAgent(name string) {
	d.t.Helper()
	d.startAgentIn(name, d.hostDir(name), d.token)
}

func (d *dc) hostDir(name string) string { return filepath.Join(d.dir, "hosts", name) }

// startAgentIn runs a host agent on a data dir of choice, with a join token.
func (d *dc) startAgentIn(name, dataDir, token string) {
	d.t.Helper()
	cfg := agent.Config{ServerURL: d.srv.URL(), JoinToken: token, DataDir: dataDir,
		Name: name, Listen: "127.0.0.1:0", Driver: sim.New(sim.Options{CPUs: 8, MemoryBytes: 16 << 30, ShutdownDelay: 20 * time.Millisecond, Host: name}), Limits: d.agentLimits, Log: testLog(d.t)}
	if d.agentConfig != nil {
		d.agentConfig(&cfg)
	}
	a, err := agent.New(cfg)
	if err != nil {
		d.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := a.Run(ctx); err != nil {
			d.t.Errorf("agent %s: %v", name, err)
		}
	}()
	d.agents[name] = func() { cancel(); <-done }
}

func (d *dc) stopAgent(name string) {
	d.agents[name]()
	delete(d.agents, name)
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// heartbeats waits until the server has taken n more heartbeats from each
// of the hosts: what a test that must see "a few heartbeats later" waits
// for, rather than a fixed time.
func (d *dc) heartbeats(n int, hosts ...string) {
	d.t.Helper()
	seen := map[string]time.Time{}
	count := map[string]int{}
	eventually(d.t, time.Duration(n+10)*5*time.Second, fmt.Sprintf("%d heartbeats from %v", n, hosts), func() bool {
		done := true
		for _, name := range hosts {
			h, err := client.Get[*api.Host](context.Background(), d.c, api.KindHost, name)
			if err != nil {
				return false
			}
			if last := h.Status.LastHeartbeat; !last.Equal(seen[name]) {
				if !seen[name].IsZero() {
					count[name]++
				}
				seen[name] = last
			}
			done = done && count[name] >= n
		}
		return done
	})
}

func (d *dc) waitHosts(n int) {
	eventually(d.t, 30*time.Second, fmt.Sprintf("%d connected hosts", n), func() bool {
		hs, err := client.List[*api.Host](context.Background(), d.c, api.KindHost, nil)
		if err != nil {
			return false
		}
		up := 0
		for _, h := range hs {
			if h.Status.Connection == api.HostConnected && len(h.Status.Datastores) > 0 {
				up++
			}
		}
		return up >= n
	})
}

func (d *dc) vm(name string) *api.VM {
	d.t.Helper()
	vm, err := d.c.GetVM(context.Background(), name)
	if err != nil {
		d.t.Fatal(err)
	}
	return vm
}

// run waits for a task and fails the test if it does not succeed.
func (d *dc) run(task *api.Task, err error) *api.Task {
	d.t.Helper()
	if err != nil {
		d.t.Fatalf("request failed: %v", err)
	}
	t, err := d.c.Wait(context.Background(), task)
	if err != nil {
		d.t.Fatalf("task failed: %v", err)
	}
	return t
}
