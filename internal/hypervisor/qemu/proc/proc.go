// Package proc is a VM's QEMU process seen from outside any VM state:
// where its runtime files are (Paths), the state file one agent process
// leaves for the next (State), and finding, watching, killing and dialling
// a QEMU that may have been started by an earlier agent. It holds no state
// of its own; package qemu's vm type does.
package proc

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu/cmdline"
	"github.com/vdc-project/vdc/internal/qmp"
)

// Paths are where a VM's runtime files live. Sockets go in a short
// directory Run (a unix socket path is limited to 107 bytes); logs and the
// pid file in the VM's own directory Dir.
type Paths struct {
	Run, Dir string
}

func (p Paths) QMP() string        { return filepath.Join(p.Run, "qmp.sock") }
func (p Paths) QGA() string        { return filepath.Join(p.Run, "qga.sock") }
func (p Paths) Console() string    { return filepath.Join(p.Run, "console.sock") }
func (p Paths) VNC() string        { return filepath.Join(p.Run, "vnc.sock") }
func (p Paths) ConsoleLog() string { return filepath.Join(p.Dir, "console.log") }
func (p Paths) PIDFile() string    { return filepath.Join(p.Dir, "qemu.pid") }
func (p Paths) QEMULog() string    { return filepath.Join(p.Dir, "qemu.log") }
func (p Paths) StateFile() string  { return filepath.Join(p.Dir, "state.json") }
func (p Paths) Seed() string       { return filepath.Join(p.Dir, "cidata.iso") }

// Files are the files a VM's command line names.
func (p Paths) Files() cmdline.Files {
	return cmdline.Files{QMP: p.QMP(), QGA: p.QGA(), Console: p.Console(), ConsoleLog: p.ConsoleLog(),
		VNC: p.VNC(), PIDFile: p.PIDFile(), Seed: p.Seed()}
}

// State is what the driver keeps of a VM between agent processes.
// The QEMU process is the truth about whether a VM runs; this adds since
// when, and why it stopped.
type State struct {
	Power  string    `json:"power"`
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"since"`
	// Lease is the lease file the running QEMU holds (see qemu's lease.go).
	Lease string `json:"lease,omitempty"`
	// Hardware is the running QEMU's (hot-added vCPUs and memory too).
	Hardware *api.VMHardware `json:"hardware,omitempty"`
}

// WriteState saves s at path, replacing the file whole.
func WriteState(path string, s State) error {
	b, _ := json.Marshal(s)
	return WriteFile(path, b)
}

// WriteFile writes b to path through a temporary file renamed over it:
// a reader sees the old content or the new, never part of it.
func WriteFile(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// ReadState reads the state saved at path.
func ReadState(path string) (State, error) {
	var s State
	b, err := os.ReadFile(path)
	if err != nil {
		return s, err
	}
	return s, json.Unmarshal(b, &s)
}

// Find returns the PID of the QEMU process of a VM from its pid file, if
// that process is alive and really is this VM's QEMU (a PID can be reused
// after a reboot).
func Find(pidFile, vmID string) (int, bool) {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, isQEMUOf(pid, vmID)
}

func isQEMUOf(pid int, vmID string) bool {
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return false
	}
	if stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat")); err == nil {
		if i := strings.LastIndexByte(string(stat), ')'); i > 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
			return false // exited, not yet reaped
		}
	}
	return strings.Contains(string(cmdline), "\x00-uuid\x00"+vmID+"\x00")
}

// Watch closes exited when a process that is not our child ends.
func Watch(pid int, exited chan struct{}) {
	for {
		if err := syscall.Kill(pid, 0); err != nil {
			close(exited)
			return
		}
		if _, err := os.Stat(filepath.Join("/proc", fmt.Sprint(pid))); err != nil {
			close(exited)
			return
		}
		if stat, err := os.ReadFile(filepath.Join("/proc", fmt.Sprint(pid), "stat")); err == nil && zombie(stat) {
			close(exited)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func zombie(stat []byte) bool {
	for i := len(stat) - 1; i > 0; i-- {
		if stat[i] == ')' {
			return i+2 < len(stat) && stat[i+2] == 'Z'
		}
	}
	return false
}

// KillAndWait ends a QEMU process and waits until it is gone.
func KillAndWait(pid int, exited <-chan struct{}) error {
	if pid > 0 {
		p, err := os.FindProcess(pid)
		if err == nil {
			_ = p.Kill()
		}
	}
	select {
	case <-exited:
		return nil
	case <-time.After(15 * time.Second):
		return fmt.Errorf("QEMU (pid %d) does not die", pid)
	}
}

// DialQMP connects to a QEMU that is starting, giving up if it exits.
func DialQMP(ctx context.Context, path string, exited <-chan struct{}) (*qmp.Client, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		q, err := qmp.Dial(dctx, path)
		cancel()
		if err == nil {
			return q, nil
		}
		select {
		case <-exited:
			return nil, fmt.Errorf("QEMU exited before its QMP socket answered: %w", err)
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("QMP socket %s did not answer in 30s: %w", path, err)
		}
	}
}

// Tail returns the last lines of a file, for error messages.
func Tail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	s := strings.TrimRight(string(b), "\n")
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "; ")
}
