package qemu

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vdc-project/vdc/api"
)

// savedState is what the driver keeps of a VM between agent processes.
// The QEMU process is the truth about whether a VM runs; this adds since
// when, and why it stopped.
type savedState struct {
	Power  string    `json:"power"`
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"since"`
	// Lease is the lease file the running QEMU holds (see lease.go).
	Lease string `json:"lease,omitempty"`
	// Hardware is the running QEMU's (hot-added vCPUs and memory too).
	Hardware *api.VMHardware `json:"hardware,omitempty"`
}

func writeState(path string, s savedState) error {
	b, _ := json.Marshal(s)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func readState(path string) (savedState, error) {
	var s savedState
	b, err := os.ReadFile(path)
	if err != nil {
		return s, err
	}
	return s, json.Unmarshal(b, &s)
}

// findProcess returns the PID of the QEMU process of a VM from its pid
// file, if that process is alive and really is this VM's QEMU (a PID can
// be reused after a reboot).
func findProcess(pidFile, vmID string) (int, bool) {
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

// tail returns the last lines of a file, for error messages.
func tail(path string, lines int) string {
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
