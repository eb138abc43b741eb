package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/agent"
	"github.com/vdc-project/vdc/internal/testguest"
)

// datacenter is a datacenter a benchmark runs on this machine: a `vdc
// server` (of the running binary) with the default inventory
// (client.Bootstrap) and the `vdc agent` processes it starts, each
// logging to DIR/NAME.log.
type datacenter struct {
	exe, dir string
	c        *client.Client
	srv      *exec.Cmd
	agents   []*exec.Cmd
}

// startDC starts the server, with serverArgs added to its flags.
func startDC(ctx context.Context, dir string, serverArgs ...string) (*datacenter, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	d := &datacenter{exe: exe, dir: dir}
	srvDir := filepath.Join(dir, "server")
	// Every simulated host is on 127.0.0.1, hundreds of them joining and
	// first reporting at once: no per-address limit to measure around.
	args := append([]string{"server", "--data", srvDir, "--listen", "127.0.0.1:0", "--log-level", "warn", "--max-conns-per-address", "1048576"}, serverArgs...)
	if d.srv, err = spawn(exe, filepath.Join(dir, "server.log"), args...); err != nil {
		return nil, err
	}
	if d.c, err = waitForServer(ctx, filepath.Join(srvDir, "admin.json")); err == nil {
		err = d.c.Bootstrap(ctx, filepath.Join(dir, client.DefaultDatastore), false)
	}
	if err != nil {
		d.stop()
		return nil, err
	}
	return d, nil
}

// agent starts an agent process NAME (data in DIR/NAME) that joins hosts
// hosts (more than one with --sim-hosts in args).
func (d *datacenter) agent(ctx context.Context, name string, hosts int, args ...string) (*exec.Cmd, error) {
	tok, err := d.c.CreateJoinToken(ctx, api.JoinTokenRequest{Uses: hosts, Cluster: client.DefaultCluster})
	if err != nil {
		return nil, err
	}
	tokFile := filepath.Join(d.dir, name+".join-token")
	if err := agent.WriteJoinTokenFile(tokFile, tok.Token); err != nil {
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
func (d *datacenter) waitHosts(ctx context.Context, n int) error {
	return waitConnected(ctx, d.c, n, time.Duration(max(n/50, 1))*time.Minute)
}

// stop ends the agents, then the server.
func (d *datacenter) stop() {
	for i := len(d.agents) - 1; i >= 0; i-- {
		stopProc(d.agents[i])
	}
	stopProc(d.srv)
}

// uploadTestImage uploads the test guest as the kernel image "test".
func (d *datacenter) uploadTestImage(ctx context.Context, guest testguest.Result) error {
	_, err := d.c.CreateImageFromFiles(ctx, api.ImageCreateRequest{Name: "test", Type: api.ImageKernel, Cmdline: guest.Cmdline},
		map[string]string{"kernel": guest.Kernel, "initrd": guest.Initrd}, nil)
	return err
}

// buildGuest builds the test guest in DIR/guest.
func buildGuest(ctx context.Context, dir string) (testguest.Result, error) {
	return testguest.Build(ctx, testguest.Options{OutDir: filepath.Join(dir, "guest"), CacheDir: filepath.Join(os.TempDir(), "vdc-testguest-cache")})
}

// waitForServer waits for a server's client config and API.
func waitForServer(ctx context.Context, cfgPath string) (*client.Client, error) {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if c, err := client.FromFile(cfgPath); err == nil {
			if _, err := c.Version(ctx); err == nil {
				return c, nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil, fmt.Errorf("server did not come up within a minute (config %s)", cfgPath)
}

func waitConnected(ctx context.Context, c *client.Client, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		hs, err := client.List[*api.Host](ctx, c, api.KindHost, nil)
		up := 0
		if err == nil {
			for _, h := range hs {
				if h.Status.Connection == api.HostConnected && len(h.Status.Datastores) > 0 {
					up++
				}
			}
		}
		if up >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d hosts connected after %s", up, n, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitTask waits for the task a call returned.
func waitTask(ctx context.Context, c *client.Client) func(*api.Task, error) error {
	return func(t *api.Task, err error) error {
		if err == nil {
			_, err = c.Wait(ctx, t)
		}
		return err
	}
}

func createAndWait(ctx context.Context, c *client.Client, req api.VMCreateRequest) error {
	if err := waitTask(ctx, c)(c.CreateVM(ctx, req)); err != nil {
		return fmt.Errorf("create vm %s: %w", req.Name, err)
	}
	return nil
}

func powerAndWait(ctx context.Context, c *client.Client, vm string, req api.PowerRequest) error {
	if err := waitTask(ctx, c)(c.Power(ctx, vm, req)); err != nil {
		return fmt.Errorf("%s vm %s: %w", req.Action, vm, err)
	}
	return nil
}

// waitGuestAnswer waits until a VM's guest agent answered and returns when
// it first did (as the host recorded it).
func waitGuestAnswer(ctx context.Context, c *client.Client, vm string, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		v, err := c.GetVM(ctx, vm)
		if err == nil && v.Status.Guest != nil && v.Status.Guest.State == api.GuestRunning {
			if !v.Status.Guest.LastSeen.IsZero() {
				return v.Status.Guest.LastSeen, nil
			}
			return time.Now(), nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Time{}, fmt.Errorf("the guest agent of vm %s did not answer within %s", vm, timeout)
}

func deleteVMs(ctx context.Context, c *client.Client) {
	vms, _ := client.List[*api.VM](ctx, c, api.KindVM, nil)
	for _, vm := range vms {
		if t, err := c.Delete(ctx, api.KindVM, vm.Metadata.Name, map[string][]string{"force": {"true"}}); err == nil {
			_, _ = c.Wait(ctx, t)
		}
	}
}
