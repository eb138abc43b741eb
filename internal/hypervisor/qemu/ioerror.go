package qemu

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/qmp"
)

// onIOError remembers why QEMU is about to pause the guest: a write
// failed, most often because the datastore is full (QEMU stops a guest
// rather than fail its writes: werror=enospc).
func (v *vm) onIOError(e qmp.Event) {
	var d struct {
		Device   string `json:"device"`
		NodeName string `json:"node-name"`
		Op       string `json:"operation"`
		Action   string `json:"action"`
		NoSpace  bool   `json:"nospace"`
		Reason   string `json:"reason"`
	}
	_ = json.Unmarshal(e.Data, &d)
	name := strings.TrimSuffix(d.Device, "-dev")
	if name == "" {
		name = d.NodeName
	}
	v.mu.Lock()
	dir := ""
	for _, dc := range v.cfg.Disks {
		if dc.Name == name || strings.HasPrefix(d.NodeName, dc.Name) {
			name, dir = dc.Name, filepath.Dir(filepath.Dir(dc.Path))
		}
	}
	var why string
	if d.NoSpace {
		why = fmt.Sprintf("paused: out of space: a %s to disk %s failed: no space left on its datastore", d.Op, name)
		if dir != "" {
			why += " (" + dir + ")"
		}
		why += "; free space there, or grow it, then resume the VM"
	} else {
		why = fmt.Sprintf("paused: a %s to disk %s failed: %s", d.Op, name, d.Reason)
	}
	changed := d.Action == "stop" && v.ioError != why
	if d.Action == "stop" {
		v.ioError = why
	}
	power := v.power
	v.mu.Unlock()
	if changed {
		v.log.Warn("guest paused by an I/O error", "disk", name, "nospace", d.NoSpace, "reason", d.Reason)
		if power == hypervisor.StateSuspended {
			v.SetPower(hypervisor.StateSuspended, why)
		}
	}
}

// pauseReason explains a pause QEMU made by itself.
func (v *vm) pauseReason() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.ioError != "" {
		return v.ioError
	}
	return "paused by QEMU (I/O error or out of space?)"
}
