package cli

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
)

// benchDir is a benchmark's data directory: keep when given (made if
// need be), else a temp dir that the returned func removes.
func benchDir(keep, prefix string) (string, func(), error) {
	if keep != "" {
		return keep, func() {}, os.MkdirAll(keep, 0o755)
	}
	d, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", func() {}, err
	}
	return d, func() { os.RemoveAll(d) }, nil
}

// benchDC is a datacenter a benchmark runs on this machine: a `vdc server`
// with dc1, cluster1, datastore1 and vm-network, and the `vdc agent`
// processes it starts, each logging to DIR/NAME.log.
type benchDC struct {
	exe, dir string
	c        *client.Client
	srv      *exec.Cmd
	agents   []*exec.Cmd
}

// startBenchDC starts the server, with serverArgs added to its flags.
func startBenchDC(ctx context.Context, dir string, serverArgs ...string) (*benchDC, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	d := &benchDC{exe: exe, dir: dir}
	srvDir := filepath.Join(dir, "server")
	// Every simulated host is on 127.0.0.1, hundreds of them joining and
	// first reporting at once: no per-address limit to measure around.
	args := append([]string{"server", "--data", srvDir, "--listen", "127.0.0.1:0", "--log-level", "warn", "--max-conns-per-address", "1048576"}, serverArgs...)
	if d.srv, err = spawn(exe, filepath.Join(dir, "server.log"), args...); err != nil {
		return nil, err
	}
	if d.c, err = waitForServer(ctx, filepath.Join(srvDir, "admin.json")); err == nil {
		err = bootstrapInventory(ctx, d.c, filepath.Join(dir, "datastore1"))
	}
	if err != nil {
		d.stop()
		return nil, err
	}
	return d, nil
}

// agent starts an agent process NAME (data in DIR/NAME) that joins hosts
// hosts (more than one with --sim-hosts in args).
func (d *benchDC) agent(ctx context.Context, name string, hosts int, args ...string) (*exec.Cmd, error) {
	tok, err := d.c.CreateJoinToken(ctx, api.JoinTokenRequest{Uses: hosts, Cluster: upCluster})
	if err != nil {
		return nil, err
	}
	tokFile := filepath.Join(d.dir, name+".join-token")
	if err := writeJoinTokenFile(tokFile, tok.Token); err != nil {
		return nil, err
	}
	all := append([]string{"agent", "--server", d.c.URL(), "--join-token-file", tokFile, "--data", filepath.Join(d.dir, name),
		"--name", name, "--log-level", "warn"}, args...)
	p, err := spawn(d.exe, filepath.Join(d.dir, name+".log"), all...)
	if err != nil {
		return nil, err
	}
	d.agents = append(d.agents, p)
	return p, nil
}

// waitHosts waits for n connected hosts.
func (d *benchDC) waitHosts(ctx context.Context, n int) error {
	return waitConnected(ctx, d.c, n, time.Duration(max(n/50, 1))*time.Minute)
}

// stop ends the agents, then the server.
func (d *benchDC) stop() {
	for i := len(d.agents) - 1; i >= 0; i-- {
		stopProc(d.agents[i])
	}
	stopProc(d.srv)
}
