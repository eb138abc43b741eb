package qemu

import (
	"context"
	"fmt"
	"net"
	"sort"
	"time"

	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/qga"
)

func (v *vm) guestInfo() hypervisor.GuestInfo {
	v.mu.Lock()
	defer v.mu.Unlock()
	g := v.guest
	g.IPAddresses = append([]string(nil), v.guest.IPAddresses...)
	return g
}

// agent returns a connected guest agent client. QEMU serves one client
// on the channel at a time, so dials are one at a time too: a second
// caller waits and shares the first one's connection instead of queueing a
// connection QEMU would not serve.
func (v *vm) agent(ctx context.Context) (*qga.Client, error) {
	v.dialMu.Lock()
	defer v.dialMu.Unlock()
	v.mu.Lock()
	c := v.qga
	running := v.qmp != nil
	v.mu.Unlock()
	if !running {
		return nil, fmt.Errorf("vm %s is not running: %w", v.cfg.Name, hypervisor.ErrWrongState)
	}
	if c != nil {
		return c, nil
	}
	c, err := qga.Dial(ctx, v.p.qga())
	if err != nil {
		return nil, fmt.Errorf("guest agent of vm %s: %w", v.cfg.Name, err)
	}
	v.mu.Lock()
	v.qga = c
	v.mu.Unlock()
	return c, nil
}

// dropAgent forgets a guest agent connection that failed.
func (v *vm) dropAgent(c *qga.Client) {
	v.mu.Lock()
	if v.qga == c {
		v.qga = nil
	}
	v.mu.Unlock()
	c.Close()
}

// pollGuest pings the guest agent until ctx ends, keeping the guest
// information current. A change of the guest's state is a state change of
// the VM for subscribers.
func (v *vm) pollGuest(ctx context.Context) {
	t := time.NewTicker(v.d.opt.GuestPoll)
	defer t.Stop()
	for {
		v.checkGuest(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (v *vm) checkGuest(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	before := v.guestInfo()
	c, err := v.agent(pctx)
	if err == nil {
		if err = c.Ping(pctx); err != nil {
			v.dropAgent(c)
		}
	}
	if ctx.Err() != nil {
		return
	}
	v.mu.Lock()
	if err == nil {
		v.answered = true
		v.guest.State = hypervisor.GuestRunning
		v.guest.LastSeen = time.Now().UTC()
		v.guestTick++
	} else if v.answered {
		v.guest.State = hypervisor.GuestNotResponding
	} else {
		v.guest.State = hypervisor.GuestNotInstalled
	}
	refresh := err == nil && (before.State != hypervisor.GuestRunning || v.guestTick%6 == 0)
	v.mu.Unlock()
	if refresh {
		v.refreshGuest(ctx, c)
	}
	if after := v.guestInfo(); after.State != before.State || after.Hostname != before.Hostname ||
		fmt.Sprint(after.IPAddresses) != fmt.Sprint(before.IPAddresses) {
		v.d.notify(v.cfg.ID)
	}
}

// refreshGuest reads the guest's OS, name and addresses.
func (v *vm) refreshGuest(ctx context.Context, c *qga.Client) {
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var g hypervisor.GuestInfo
	if os, err := c.OSInfo(gctx); err == nil {
		g.OS = os.PrettyName
		if g.OS == "" {
			g.OS = os.Name
		}
		g.Kernel = os.KernelRelease
	}
	if h, err := c.HostName(gctx); err == nil {
		g.Hostname = h
	}
	if ifs, err := c.Interfaces(gctx); err == nil {
		for _, i := range ifs {
			for _, a := range i.IPAddresses {
				ip := net.ParseIP(a.Address)
				if ip == nil || ip.IsLoopback() || ip.IsLinkLocalUnicast() {
					continue
				}
				g.IPAddresses = append(g.IPAddresses, a.Address)
			}
		}
		sort.Strings(g.IPAddresses)
	}
	v.mu.Lock()
	v.guest.OS, v.guest.Kernel, v.guest.Hostname, v.guest.IPAddresses = g.OS, g.Kernel, g.Hostname, g.IPAddresses
	v.mu.Unlock()
}

func (v *vm) guestShutdown(ctx context.Context) error {
	c, err := v.agent(ctx)
	if err != nil {
		return err
	}
	if err := c.Shutdown(ctx, "powerdown"); err != nil {
		v.dropAgent(c)
		return err
	}
	return nil
}

// Guest returns what the guest agent told of the guest.
func (d *Driver) Guest(ctx context.Context, id string) (hypervisor.GuestInfo, error) {
	v, err := d.get(id)
	if err != nil {
		return hypervisor.GuestInfo{}, err
	}
	return v.guestInfo(), nil
}

// GuestExec runs a program in the guest through its agent.
func (d *Driver) GuestExec(ctx context.Context, id string, req hypervisor.ExecRequest) (hypervisor.ExecResult, error) {
	v, err := d.get(id)
	if err != nil {
		return hypervisor.ExecResult{}, err
	}
	if err := v.wrongState("exec in", hypervisor.StateOn); err != nil {
		return hypervisor.ExecResult{}, err
	}
	// Fail at once when the agent is known not to answer, rather than
	// waiting out the caller's timeout.
	if g := v.guestInfo(); g.State == hypervisor.GuestNotInstalled || g.State == hypervisor.GuestNotResponding {
		return hypervisor.ExecResult{}, fmt.Errorf("exec in vm %s: its guest agent is %s: %w", v.cfg.Name, g.State, hypervisor.ErrWrongState)
	}
	c, err := v.agent(ctx)
	if err != nil {
		return hypervisor.ExecResult{}, err
	}
	res, err := c.Exec(ctx, qga.ExecRequest{Path: req.Path, Args: req.Args, Env: req.Env, Input: req.Input})
	if err != nil {
		if ctx.Err() != nil {
			v.dropAgent(c) // the stream may be out of step
		}
		return hypervisor.ExecResult{}, fmt.Errorf("exec %s in vm %s: %w", req.Path, v.cfg.Name, err)
	}
	return hypervisor.ExecResult{ExitCode: res.ExitCode, Signal: res.Signal, Stdout: res.Stdout, Stderr: res.Stderr, Truncated: res.Truncated}, nil
}
