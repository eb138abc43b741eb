// Package guestagent watches one VM's qemu-guest-agent for the qemu
// driver: it keeps the connection (QEMU serves one client on the channel
// at a time), pings the agent on a schedule and whenever an operation
// needs it, and tells from its answers and silences whether it runs,
// stopped answering, has not started yet (the guest boots) or is not
// installed, with the guest's OS, name and addresses.
//
// An Agent is its own type with its own lock, apart from the VM's QEMU
// process state: all it needs of that is whether a QEMU runs (to refuse
// when none does) and when the guest starts, which the VM tells it. The
// VM takes its own lock before an Agent's, never the other way round.
package guestagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/qga"
)

// Options say which agent an Agent watches and how.
type Options struct {
	// Socket is the unix socket QEMU serves the agent's channel on.
	Socket string
	// Name is the VM's name now, for messages.
	Name func() string
	// Running says whether the VM has a running QEMU.
	Running func() bool
	// Changed tells the driver's subscribers that the VM changed: the
	// agent's state, or the guest's name or addresses.
	Changed func()
	// Poll is how often the agent is pinged; Grace how long it may stay
	// silent after the guest starts before it is shown not-installed
	// rather than not-running.
	Poll, Grace time.Duration
	Log         *slog.Logger
}

// Agent is the driver's view of one VM's guest agent.
type Agent struct {
	o      Options
	dialMu sync.Mutex // one dial at a time

	mu       sync.Mutex
	guest    hypervisor.GuestInfo
	answered bool // the agent answered since this boot
	// since is when the guest last started (a boot, a reset, or this
	// agent taking the VM over): its agent has had a chance to answer
	// once Grace has passed since.
	since      time.Time
	lastAnswer time.Time // of the agent, to anyone
	c          *qga.Client
	tick       int
}

// New is an Agent of a guest that is not running.
func New(o Options) *Agent { return &Agent{o: o} }

// Info is what the agent told of the guest.
func (a *Agent) Info() hypervisor.GuestInfo {
	a.mu.Lock()
	defer a.mu.Unlock()
	g := a.guest
	g.IPAddresses = append([]string(nil), a.guest.IPAddresses...)
	return g
}

// Launched forgets the last QEMU's guest: a new one starts.
func (a *Agent) Launched() {
	a.mu.Lock()
	a.answered = false
	a.guest = hypervisor.GuestInfo{}
	a.mu.Unlock()
}

// Started records that the guest starts now (its QEMU is taken over).
func (a *Agent) Started() {
	a.mu.Lock()
	a.since = time.Now()
	a.mu.Unlock()
}

// Reset records that the guest was reset: it boots again.
func (a *Agent) Reset() {
	a.mu.Lock()
	a.answered, a.since = false, time.Now()
	a.mu.Unlock()
}

// Exited closes the connection of a QEMU that is gone, and forgets its
// guest.
func (a *Agent) Exited() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.c != nil {
		a.c.Close()
		a.c = nil
	}
	a.guest = hypervisor.GuestInfo{}
}

// Close closes the connection, if any.
func (a *Agent) Close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.c != nil {
		a.c.Close()
		a.c = nil
	}
}

// Client returns a connected guest agent client. QEMU serves one client
// on the channel at a time, so dials are one at a time too: a second
// caller waits and shares the first one's connection instead of queueing a
// connection QEMU would not serve.
func (a *Agent) Client(ctx context.Context) (*qga.Client, error) {
	a.dialMu.Lock()
	defer a.dialMu.Unlock()
	running := a.o.Running()
	a.mu.Lock()
	c := a.c
	a.mu.Unlock()
	if !running {
		return nil, fmt.Errorf("vm %s is not running: %w", a.o.Name(), hypervisor.ErrWrongState)
	}
	if c != nil {
		return c, nil
	}
	c, err := qga.Dial(ctx, a.o.Socket)
	if err != nil {
		return nil, fmt.Errorf("guest agent of vm %s: %w", a.o.Name(), err)
	}
	a.mu.Lock()
	a.c = c
	a.mu.Unlock()
	return c, nil
}

// Drop forgets a guest agent connection that failed.
func (a *Agent) Drop(c *qga.Client) {
	a.mu.Lock()
	if a.c == c {
		a.c = nil
	}
	a.mu.Unlock()
	c.Close()
}

// Poll pings the guest agent until ctx ends, keeping the guest
// information current. A change of the guest's state is a state change of
// the VM for subscribers.
func (a *Agent) Poll(ctx context.Context) {
	t := time.NewTicker(a.o.Poll)
	defer t.Stop()
	for {
		a.check(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (a *Agent) check(ctx context.Context) {
	before := a.Info()
	c, err := a.Reach(ctx)
	if ctx.Err() != nil {
		return
	}
	a.mu.Lock()
	if err == nil {
		a.tick++
	}
	refresh := err == nil && (before.State != hypervisor.GuestRunning || a.tick%6 == 0)
	a.mu.Unlock()
	if refresh {
		a.refresh(ctx, c)
	}
	if after := a.Info(); after.Hostname != before.Hostname || fmt.Sprint(after.IPAddresses) != fmt.Sprint(before.IPAddresses) {
		a.o.Changed()
	}
}

// ping bounds one ping of the guest agent: one that runs answers in
// milliseconds, even under TCG.
const ping = 3 * time.Second

// Reach returns a connection to the guest agent that answered just now,
// asking it (guest-ping) rather than trusting the last poll, and records
// the answer or the silence in the guest's state.
func (a *Agent) Reach(ctx context.Context) (*qga.Client, error) {
	asked := time.Now()
	pctx, cancel := context.WithTimeout(ctx, ping)
	defer cancel()
	c, err := a.Client(pctx)
	if errors.Is(err, hypervisor.ErrWrongState) {
		return nil, err
	}
	if err == nil {
		if err = c.Ping(pctx); err != nil {
			a.Drop(c)
		}
	}
	if ctx.Err() != nil {
		return nil, ctx.Err() // the caller gave up: that says nothing of the agent
	}
	a.note(asked, err)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// note records whether the guest agent answered a call made at asked. A
// silence is old news when it answered another call since.
func (a *Agent) note(asked time.Time, err error) {
	now := time.Now()
	a.mu.Lock()
	before := a.guest.State
	switch {
	case err == nil:
		a.answered, a.lastAnswer = true, now
		a.guest.State, a.guest.LastSeen = hypervisor.GuestRunning, now.UTC()
	case a.lastAnswer.After(asked):
	case a.answered:
		a.guest.State = hypervisor.GuestNotResponding
	case now.Sub(a.since) < a.o.Grace:
		a.guest.State = hypervisor.GuestNotRunning
	default:
		a.guest.State = hypervisor.GuestNotInstalled
	}
	changed := a.guest.State != before
	a.mu.Unlock()
	if changed {
		a.o.Changed()
	}
}

// Silent is the error of an operation (what: "exec in") that needs the
// guest agent, which did not answer (err): what state it is in and what
// to do about it.
func (a *Agent) Silent(what string, err error) error {
	a.mu.Lock()
	state, up, last := a.guest.State, time.Since(a.since), a.guest.LastSeen
	a.mu.Unlock()
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
	return fmt.Errorf("%s vm %s: %s: %v: %w", what, a.o.Name(), why, err, hypervisor.ErrGuestAgent)
}

// refresh reads the guest's OS, name and addresses.
func (a *Agent) refresh(ctx context.Context, c *qga.Client) {
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
			for _, addr := range i.IPAddresses {
				ip := net.ParseIP(addr.Address)
				if ip == nil || ip.IsLoopback() || ip.IsLinkLocalUnicast() {
					continue
				}
				g.IPAddresses = append(g.IPAddresses, addr.Address)
			}
		}
		sort.Strings(g.IPAddresses)
	}
	a.mu.Lock()
	a.guest.OS, a.guest.Kernel, a.guest.Hostname, a.guest.IPAddresses = g.OS, g.Kernel, g.Hostname, g.IPAddresses
	a.mu.Unlock()
}

// Shutdown asks the guest, through its agent, to power off.
func (a *Agent) Shutdown(ctx context.Context) error {
	c, err := a.Client(ctx)
	if err != nil {
		return err
	}
	if err := c.Shutdown(ctx, "powerdown"); err != nil {
		a.Drop(c)
		return err
	}
	return nil
}

// Freeze asks the guest agent to freeze the guest's file systems, and
// returns how to thaw them.
func (a *Agent) Freeze(ctx context.Context) (func(), error) {
	fctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	c, err := a.Reach(fctx)
	if err != nil {
		if errors.Is(err, hypervisor.ErrWrongState) || ctx.Err() != nil {
			return nil, err
		}
		return nil, a.Silent("quiesce", err)
	}
	var n int
	if err := c.Execute(fctx, "guest-fsfreeze-freeze", nil, &n); err != nil {
		return nil, fmt.Errorf("guest agent: %w", err)
	}
	return func() {
		tctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		var n int
		if err := c.Execute(tctx, "guest-fsfreeze-thaw", nil, &n); err != nil {
			a.o.Log.Error("cannot thaw the guest's file systems", "err", err)
		}
	}, nil
}

// Exec runs a program in the guest through its agent.
func (a *Agent) Exec(ctx context.Context, req hypervisor.ExecRequest) (hypervisor.ExecResult, error) {
	// Ask the agent now: the last poll may be older than its first answer.
	c, err := a.Reach(ctx)
	if err != nil {
		if errors.Is(err, hypervisor.ErrWrongState) || ctx.Err() != nil {
			return hypervisor.ExecResult{}, err
		}
		return hypervisor.ExecResult{}, a.Silent("exec in", err)
	}
	res, err := c.Exec(ctx, qga.ExecRequest{Path: req.Path, Args: req.Args, Env: req.Env, Input: req.Input})
	if err != nil {
		if ctx.Err() != nil {
			a.Drop(c) // the stream may be out of step
		}
		return hypervisor.ExecResult{}, fmt.Errorf("exec %s in vm %s: %w", req.Path, a.o.Name(), err)
	}
	return hypervisor.ExecResult{ExitCode: res.ExitCode, Signal: res.Signal, Stdout: res.Stdout, Stderr: res.Stderr, Truncated: res.Truncated}, nil
}
