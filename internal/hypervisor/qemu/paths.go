package qemu

import (
	"path/filepath"

	"github.com/vdc-project/vdc/internal/hypervisor/qemu/cmdline"
)

// paths are where a VM's runtime files live. Sockets go in a short
// directory (a unix socket path is limited to 107 bytes); logs and the pid
// file in the VM's own directory.
type paths struct {
	run, dir string
}

func (p paths) qmp() string        { return filepath.Join(p.run, "qmp.sock") }
func (p paths) qga() string        { return filepath.Join(p.run, "qga.sock") }
func (p paths) console() string    { return filepath.Join(p.run, "console.sock") }
func (p paths) vnc() string        { return filepath.Join(p.run, "vnc.sock") }
func (p paths) consoleLog() string { return filepath.Join(p.dir, "console.log") }
func (p paths) pidFile() string    { return filepath.Join(p.dir, "qemu.pid") }
func (p paths) qemuLog() string    { return filepath.Join(p.dir, "qemu.log") }
func (p paths) stateFile() string  { return filepath.Join(p.dir, "state.json") }
func (p paths) seed() string       { return filepath.Join(p.dir, "cidata.iso") }

// files are the files a VM's command line names.
func (p paths) files() cmdline.Files {
	return cmdline.Files{QMP: p.qmp(), QGA: p.qga(), Console: p.console(), ConsoleLog: p.consoleLog(),
		VNC: p.vnc(), PIDFile: p.pidFile(), Seed: p.seed()}
}

// CPUModel is the vCPU model every VM gets (see cmdline.CPUModel).
const CPUModel = cmdline.CPUModel
