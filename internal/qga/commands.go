package qga

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Ping checks that the agent answers: the guest heartbeat.
func (c *Client) Ping(ctx context.Context) error {
	return c.Execute(ctx, "guest-ping", nil, nil)
}

// OSInfo is what guest-get-osinfo reports: on Linux, /etc/os-release and
// uname.
type OSInfo struct {
	ID            string `json:"id"`
	Name          string `json:"name"`
	PrettyName    string `json:"pretty-name"`
	Version       string `json:"version"`
	VersionID     string `json:"version-id"`
	KernelRelease string `json:"kernel-release"`
	KernelVersion string `json:"kernel-version"`
	Machine       string `json:"machine"`
}

// OSInfo returns the guest's operating system.
func (c *Client) OSInfo(ctx context.Context) (OSInfo, error) {
	var info OSInfo
	err := c.Execute(ctx, "guest-get-osinfo", nil, &info)
	return info, err
}

// HostName returns the guest's host name.
func (c *Client) HostName(ctx context.Context) (string, error) {
	var r struct {
		HostName string `json:"host-name"`
	}
	err := c.Execute(ctx, "guest-get-host-name", nil, &r)
	return r.HostName, err
}

// Interface is a network interface of the guest.
type Interface struct {
	Name            string      `json:"name"`
	HardwareAddress string      `json:"hardware-address"`
	IPAddresses     []IPAddress `json:"ip-addresses"`
}

// IPAddress is an address of a guest interface. Type is "ipv4" or "ipv6".
type IPAddress struct {
	Type    string `json:"ip-address-type"`
	Address string `json:"ip-address"`
	Prefix  int    `json:"prefix"`
}

// Interfaces returns the guest's network interfaces, loopback included.
func (c *Client) Interfaces(ctx context.Context) ([]Interface, error) {
	var ifs []Interface
	err := c.Execute(ctx, "guest-network-get-interfaces", nil, &ifs)
	return ifs, err
}

// ExecRequest is a program to run in the guest. Env, when set, is the whole
// environment of the program ("NAME=value"); when empty the program gets
// the agent's. Input, when set, is the program's stdin; when empty, stdin
// is the agent's own (usually /dev/null).
type ExecRequest struct {
	Path  string
	Args  []string
	Env   []string
	Input []byte
}

// ExecResult is how a program run in the guest ended. ExitCode is -1 when
// the program was killed by a signal, which Signal then holds. The agent
// keeps at most 16 MiB of each stream; Truncated says it dropped the rest.
type ExecResult struct {
	ExitCode  int
	Signal    int
	Stdout    []byte
	Stderr    []byte
	Truncated bool
}

// Exec polling backs off between these bounds: a quick command answers in
// tens of milliseconds, a long one does not load the guest with polls.
const (
	execPollFirst = 20 * time.Millisecond
	execPollMax   = 500 * time.Millisecond
)

// Exec runs a program in the guest, waits for it to end and returns its
// exit status and output. A program that cannot be started (missing,
// not executable) is an *Error of guest-exec (Class "GenericError") rather
// than an exit code 127. If ctx ends first the program goes on running in
// the guest and Exec returns ctx's error, naming the guest pid.
func (c *Client) Exec(ctx context.Context, req ExecRequest) (ExecResult, error) {
	args := struct {
		Path          string   `json:"path"`
		Arg           []string `json:"arg,omitempty"`
		Env           []string `json:"env,omitempty"`
		InputData     []byte   `json:"input-data,omitempty"` // base64, as encoding/json does []byte
		CaptureOutput bool     `json:"capture-output"`
	}{req.Path, req.Args, req.Env, req.Input, true}
	var started struct {
		PID int `json:"pid"`
	}
	if err := c.Execute(ctx, "guest-exec", args, &started); err != nil {
		return ExecResult{}, err
	}

	delay := execPollFirst
	timer := time.NewTimer(delay)
	defer timer.Stop()
	for {
		select {
		case <-timer.C:
		case <-ctx.Done():
			return ExecResult{}, fmt.Errorf("qga exec %s: pid %d still running in the guest: %w", req.Path, started.PID, ctx.Err())
		}
		// The agent forgets a program once it reported it exited: this
		// answer is the only one.
		var st struct {
			Exited       bool   `json:"exited"`
			ExitCode     *int   `json:"exitcode"`
			Signal       *int   `json:"signal"`
			OutData      []byte `json:"out-data"`
			ErrData      []byte `json:"err-data"`
			OutTruncated bool   `json:"out-truncated"`
			ErrTruncated bool   `json:"err-truncated"`
		}
		err := c.Execute(ctx, "guest-exec-status", map[string]int{"pid": started.PID}, &st)
		if err != nil {
			return ExecResult{}, fmt.Errorf("qga exec %s: pid %d: %w", req.Path, started.PID, err)
		}
		if st.Exited {
			res := ExecResult{
				Stdout:    st.OutData,
				Stderr:    st.ErrData,
				Truncated: st.OutTruncated || st.ErrTruncated,
			}
			switch {
			case st.Signal != nil:
				res.ExitCode, res.Signal = -1, *st.Signal
			case st.ExitCode != nil:
				res.ExitCode = *st.ExitCode
			}
			return res, nil
		}
		delay = min(2*delay, execPollMax)
		timer.Reset(delay)
	}
}

// shutdownWait is how long Shutdown waits for the agent to refuse the
// command when ctx allows longer. The agent checks the command before it
// acts and answers only a refusal; a guest that accepted sends nothing,
// and may keep the connection open across a reboot.
const shutdownWait = 3 * time.Second

// Shutdown asks the guest to shut down: mode is "powerdown" (the default
// when empty), "halt" or "reboot". The agent never answers a success, so
// once the command is written, the connection ending, ctx ending, or
// shutdownWait passing without an answer all count as success; an error
// answer is an *Error. The guest stops answering while it goes down; the
// next call synchronizes again, and times out until an agent is back.
func (c *Client) Shutdown(ctx context.Context, mode string) error {
	const command = "guest-shutdown"
	release, err := c.acquire(ctx, command)
	if err != nil {
		return err
	}
	defer release()
	var args any
	if mode != "" {
		args = map[string]string{"mode": mode}
	}
	id, err := c.send(ctx, command, args)
	if err != nil {
		return err
	}
	c.conn.SetReadDeadline(time.Now().Add(shutdownWait))
	if ctx.Err() != nil { // ctx ended while the deadline was being set
		return nil
	}
	a, err := c.readAnswer(id)
	if err != nil {
		if ctx.Err() == nil && !isTimeout(err) && c.broken == nil {
			c.broken = err // the connection ended: QEMU is going away
			c.conn.Close()
		}
		return nil
	}
	if a.Error != nil {
		c.synced = true
		return &Error{Class: a.Error.Class, Desc: a.Error.Desc, Command: command}
	}
	return nil
}

func isTimeout(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout()
}

// VCPU is one logical CPU of the guest, as guest-get-vcpus sees it.
type VCPU struct {
	LogicalID  int  `json:"logical-id"`
	Online     bool `json:"online"`
	CanOffline bool `json:"can-offline"`
}

// VCPUs lists the guest's logical CPUs, online or not.
func (c *Client) VCPUs(ctx context.Context) ([]VCPU, error) {
	var out []VCPU
	err := c.Execute(ctx, "guest-get-vcpus", nil, &out)
	return out, err
}

// OnlineVCPUs brings the guest's logical CPUs ids online and returns how
// many it did (it stops at the first it cannot).
func (c *Client) OnlineVCPUs(ctx context.Context, ids []int) (int, error) {
	set := make([]VCPU, 0, len(ids))
	for _, id := range ids {
		set = append(set, VCPU{LogicalID: id, Online: true})
	}
	var n int
	err := c.Execute(ctx, "guest-set-vcpus", map[string]any{"vcpus": set}, &n)
	return n, err
}

// MemoryBlock is one block of the guest's memory (Linux: a directory of
// /sys/devices/system/memory).
type MemoryBlock struct {
	PhysIndex  uint64 `json:"phys-index"`
	Online     bool   `json:"online"`
	CanOffline bool   `json:"can-offline,omitempty"`
}

// MemoryBlocks lists the guest's memory blocks, online or not.
func (c *Client) MemoryBlocks(ctx context.Context) ([]MemoryBlock, error) {
	var out []MemoryBlock
	err := c.Execute(ctx, "guest-get-memory-blocks", nil, &out)
	return out, err
}

// MemoryBlockSize is the size of the guest's memory blocks.
func (c *Client) MemoryBlockSize(ctx context.Context) (int64, error) {
	var r struct {
		Size int64 `json:"size"`
	}
	err := c.Execute(ctx, "guest-get-memory-block-info", nil, &r)
	return r.Size, err
}

// OnlineMemoryBlocks brings the guest's memory blocks online and returns
// those it could not, with the guest's reason.
func (c *Client) OnlineMemoryBlocks(ctx context.Context, blocks []uint64) (map[uint64]string, error) {
	set := make([]MemoryBlock, 0, len(blocks))
	for _, b := range blocks {
		set = append(set, MemoryBlock{PhysIndex: b, Online: true})
	}
	var res []struct {
		PhysIndex uint64 `json:"phys-index"`
		Response  string `json:"response"`
		Errno     int    `json:"error-code,omitempty"`
	}
	if err := c.Execute(ctx, "guest-set-memory-blocks", map[string]any{"mem-blks": set}, &res); err != nil {
		return nil, err
	}
	failed := map[uint64]string{}
	for _, r := range res {
		if r.Response != "success" {
			failed[r.PhysIndex] = fmt.Sprintf("%s (errno %d)", r.Response, r.Errno)
		}
	}
	return failed, nil
}
