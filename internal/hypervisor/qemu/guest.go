package qemu

import (
	"context"
	"errors"
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
	c, err := qga.Dial(ctx, v.p.QGA())
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
	before := v.guestInfo()
	c, err := v.reach(ctx)
	if ctx.Err() != nil {
		return
	}
	v.mu.Lock()
	if err == nil {
		v.guestTick++
	}
	refresh := err == nil && (before.State != hypervisor.GuestRunning || v.guestTick%6 == 0)
	v.mu.Unlock()
	if refresh {
		v.refreshGuest(ctx, c)
	}
	if after := v.guestInfo(); after.Hostname != before.Hostname || fmt.Sprint(after.IPAddresses) != fmt.Sprint(before.IPAddresses) {
		v.d.notify(v.cfg.ID)
	}
}

// guestPing bounds one ping of the guest agent: one that runs answers in
// milliseconds, even under TCG.
const guestPing = 3 * time.Second

// reach returns a connection to the guest agent that answered just now,
// asking it (guest-ping) rather than trusting the last poll, and records
// the answer or the silence in the guest's state.
func (v *vm) reach(ctx context.Context) (*qga.Client, error) {
	asked := time.Now()
	pctx, cancel := context.WithTimeout(ctx, guestPing)
	defer cancel()
	c, err := v.agent(pctx)
	if errors.Is(err, hypervisor.ErrWrongState) {
		return nil, err
	}
	if err == nil {
		if err = c.Ping(pctx); err != nil {
			v.dropAgent(c)
		}
	}
	if ctx.Err() != nil {
		return nil, ctx.Err() // the caller gave up: that says nothing of the agent
	}
	v.noteGuest(asked, err)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// noteGuest records whether the guest agent answered a call made at
// asked. A silence is old news when it answered another call since.
func (v *vm) noteGuest(asked time.Time, err error) {
	now := time.Now()
	v.mu.Lock()
	before := v.guest.State
	switch {
	case err == nil:
		v.answered, v.lastAnswer = true, now
		v.guest.State, v.guest.LastSeen = hypervisor.GuestRunning, now.UTC()
	case v.lastAnswer.After(asked):
	case v.answered:
		v.guest.State = hypervisor.GuestNotResponding
	case now.Sub(v.guestSince) < v.d.opt.GuestAgentGrace:
		v.guest.State = hypervisor.GuestNotRunning
	default:
		v.guest.State = hypervisor.GuestNotInstalled
	}
	changed := v.guest.State != before
	v.mu.Unlock()
	if changed {
		v.d.notify(v.cfg.ID)
	}
}

// silent is the error of an operation (what: "exec in") that needs the
// guest agent, which did not answer (err): what state it is in and what
// to do about it.
func (v *vm) silent(what string, err error) error {
	v.mu.Lock()
	state, up, last := v.guest.State, time.Since(v.guestSince), v.guest.LastSeen
	v.mu.Unlock()
	var why string
	switch state {
	case hypervisor.GuestNotRunning:
		why = fmt.Sprintf("its guest agent has not answered yet (not-running: the guest started %s ago and may still be booting); try again shortly",
			up.Round(time.Second))
	case hypervisor.GuestNotInstalled:
		why = fmt.Sprintf("no guest agent answered in the %s since the guest started (not-installed): is qemu-guest-agent installed and running in the guest?",
			up.Round(time.Second))
	case hypervisor.GuestNotResponding:
		why = fmt.Sprintf("its guest agent stopped answering (not-responding, last answer %s ago)", time.Since(last).Round(time.Second))
	default:
		why = "its guest agent did not answer"
	}
	return fmt.Errorf("%s vm %s: %s: %v: %w", what, v.cfg.Name, why, err, hypervisor.ErrGuestAgent)
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
	// Ask the agent now: the last poll may be older than its first answer.
	c, err := v.reach(ctx)
	if err != nil {
		if errors.Is(err, hypervisor.ErrWrongState) || ctx.Err() != nil {
			return hypervisor.ExecResult{}, err
		}
		return hypervisor.ExecResult{}, v.silent("exec in", err)
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
