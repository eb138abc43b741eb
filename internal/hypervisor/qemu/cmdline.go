package qemu

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/hypervisor"
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

// CPUModel is the vCPU model every VM gets: a common baseline, so that a
// VM can later move between hosts whatever their CPUs.
const CPUModel = "qemu64"

// memorySlots is how many DIMM slots a VM with memory hot-add gets.
const memorySlots = api.MaxMemoryHotAdds

// args builds the QEMU command line for a VM with the hardware hw (see
// bootHardware). It is pure: same config, same line (golden tests hold
// it).
func args(cfg hypervisor.VMConfig, hw api.VMHardware, p paths, accel string) []string {
	a := machineArgs(cfg, hw, p, accel)
	a = append(a, displayArgs(hw, p)...)
	a = append(a, hotAddedArgs(hw)...)
	a = append(a, kernelArgs(cfg)...)
	a = append(a, hotplugPortArgs()...)
	disks, sata := diskArgs(cfg)
	a = append(a, disks...)
	a = append(a, cdArgs(cfg, p, sata)...)
	a = append(a, nicArgs(cfg)...)
	return a
}

// machineArgs are the machine, its vCPUs and memory, and the channels the
// driver talks to it through (QMP, serial console, guest agent).
func machineArgs(cfg hypervisor.VMConfig, hw api.VMHardware, p paths, accel string) []string {
	smp := fmt.Sprint(hw.CPUs)
	if hw.MaxCPUs > hw.CPUs {
		smp += fmt.Sprintf(",maxcpus=%d", hw.MaxCPUs)
	}
	mem := fmt.Sprintf("%dM", hw.MemoryBytes>>20)
	if hw.MaxMemoryBytes > hw.MemoryBytes {
		mem = fmt.Sprintf("size=%dM,slots=%d,maxmem=%dM", hw.MemoryBytes>>20, memorySlots, hw.MaxMemoryBytes>>20)
	}
	return []string{
		"-name", "guest=" + cfg.Name + ",debug-threads=on",
		"-uuid", smbiosUUID(cfg.ID),
		"-machine", "q35",
		"-accel", accel,
		"-cpu", CPUModel,
		"-smp", smp,
		"-m", mem,
		"-nodefaults", "-no-user-config",
		"-pidfile", p.pidFile(),
		"-rtc", "base=utc",
		"-msg", "timestamp=on",
		"-chardev", "socket,id=qmp0,path=" + p.qmp() + ",server=on,wait=off",
		"-mon", "chardev=qmp0,mode=control",
		"-chardev", "socket,id=con0,path=" + p.console() + ",server=on,wait=off,logfile=" + p.consoleLog() + ",logappend=on",
		"-serial", "chardev:con0",
		"-device", "virtio-serial-pci,id=vser0",
		"-chardev", "socket,id=qga0,path=" + p.qga() + ",server=on,wait=off",
		"-device", "virtserialport,bus=vser0.0,chardev=qga0,name=org.qemu.guest_agent.0",
		"-device", "virtio-rng-pci,id=rng0",
	}
}

// displayArgs: the display is a unix socket in the VM's runtime directory
// (0700): never a TCP port, which VNC would serve to anyone without a
// password. The agent relays it to the server, the server to its clients.
func displayArgs(hw api.VMHardware, p paths) []string {
	if hw.VNC {
		return []string{"-vga", "std", "-vnc", "unix:" + escape(p.vnc())}
	}
	return []string{"-display", "none"}
}

// hotAddedArgs are the hot-added vCPUs and memory, for a copy receiving a
// VM that has them.
func hotAddedArgs(hw api.VMHardware) []string {
	var a []string
	for _, c := range hw.HotCPUs {
		a = append(a, "-device", cpuDevice(c))
	}
	for i, size := range hw.DIMMs {
		a = append(a, "-object", fmt.Sprintf("memory-backend-ram,id=%s,size=%dM", dimmBackend(i), size>>20),
			"-device", fmt.Sprintf("pc-dimm,id=%s,memdev=%s", dimmID(i), dimmBackend(i)))
	}
	return a
}

// kernelArgs boot a kernel directly, when the VM has one.
func kernelArgs(cfg hypervisor.VMConfig) []string {
	if cfg.Boot == nil {
		return nil
	}
	a := []string{"-kernel", cfg.Boot.Kernel}
	if cfg.Boot.Initrd != "" {
		a = append(a, "-initrd", cfg.Boot.Initrd)
	}
	cmdline := strings.TrimSpace(cfg.Boot.Cmdline + " vdc.hostname=" + cfg.Name)
	return append(a, "-append", cmdline)
}

// hotplugPortArgs are the empty root ports that take disks added while
// the VM runs.
func hotplugPortArgs() []string {
	var a []string
	for i := 0; i < hotplugPorts; i++ {
		a = append(a, "-device", fmt.Sprintf("pcie-root-port,id=%s,chassis=%d,bus=pcie.0", hotplugPort(i), i+1))
	}
	return a
}

// diskArgs are the VM's disks on their buses; it returns how many SATA
// ports they took.
func diskArgs(cfg hypervisor.VMConfig) ([]string, int) {
	var a []string
	scsi, sata := false, 0
	for i, d := range cfg.Disks {
		node := d.Name
		a = append(a,
			"-blockdev", fmt.Sprintf("driver=file,filename=%s,node-name=%s-file,cache.direct=off,discard=unmap", escape(d.Path), node),
			"-blockdev", fmt.Sprintf("driver=qcow2,file=%s-file,node-name=%s,discard=unmap", node, node),
		)
		boot := ""
		if i == 0 && cfg.Boot == nil {
			boot = ",bootindex=1"
		}
		switch d.Bus {
		case api.BusSCSI:
			if !scsi {
				a = append(a, "-device", "virtio-scsi-pci,id=scsi0")
				scsi = true
			}
			a = append(a, "-device", fmt.Sprintf("scsi-hd,bus=scsi0.0,drive=%s,id=%s-dev%s", node, node, boot))
		case api.BusSATA:
			a = append(a, "-device", fmt.Sprintf("ide-hd,bus=ide.%d,drive=%s,id=%s-dev%s", sata, node, node, boot))
			sata++
		default:
			bus := ""
			if d.Slot != "" {
				bus = ",bus=" + d.Slot // hot-plugged there: it stays
			}
			a = append(a, "-device", fmt.Sprintf("virtio-blk-pci,drive=%s,id=%s-dev%s%s", node, node, bus, boot))
		}
	}
	return a, sata
}

// cdArgs are the attached ISO and the cloud-init seed, on the SATA ports
// after the disks' (sata of them taken).
func cdArgs(cfg hypervisor.VMConfig, p paths, sata int) []string {
	var a []string
	if cfg.CDROM != "" {
		// An attached ISO boots first (installing from it); a kernel boot
		// needs no boot device.
		boot := ""
		if cfg.Boot == nil {
			boot = ",bootindex=0"
		}
		a = append(a,
			"-blockdev", fmt.Sprintf("driver=file,filename=%s,node-name=cd0-file,read-only=on", escape(cfg.CDROM)),
			"-blockdev", "driver=raw,file=cd0-file,node-name=cd0,read-only=on",
			"-device", fmt.Sprintf("ide-cd,bus=ide.%d,drive=cd0,id=cd0-dev%s", sata, boot),
		)
		sata++
	}
	if cfg.Seed != nil {
		a = append(a,
			"-blockdev", fmt.Sprintf("driver=file,filename=%s,node-name=seed0-file,read-only=on", escape(p.seed())),
			"-blockdev", "driver=raw,file=seed0-file,node-name=seed0,read-only=on",
			"-device", fmt.Sprintf("ide-cd,bus=ide.%d,drive=seed0,id=seed0-dev", sata),
		)
	}
	return a
}

// nicArgs are the VM's network cards.
func nicArgs(cfg hypervisor.VMConfig) []string {
	var a []string
	for i, n := range cfg.NICs {
		model := n.Model
		switch model {
		case "", "virtio":
			model = "virtio-net-pci"
		case "e1000":
			model = "e1000"
		case "rtl8139":
			model = "rtl8139"
		}
		// User-mode networking until port groups are realized as bridges.
		a = append(a,
			"-netdev", fmt.Sprintf("user,id=net%d", i),
			"-device", fmt.Sprintf("%s,netdev=net%d,mac=%s,id=%s", model, i, n.MAC, n.Name),
		)
	}
	return a
}

// cpuDevice is the -device option of a hot-added vCPU.
func cpuDevice(c api.HotCPU) string {
	keys := make([]string, 0, len(c.Props))
	for k := range c.Props {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	s := c.Type + ",id=" + c.ID
	for _, k := range keys {
		s += fmt.Sprintf(",%s=%d", k, c.Props[k])
	}
	return s
}

func dimmID(i int) string      { return fmt.Sprintf("dimm%d", i) }
func dimmBackend(i int) string { return "mem-" + dimmID(i) }

// escape doubles commas, QEMU's way of quoting them in option values.
func escape(s string) string { return strings.ReplaceAll(s, ",", ",,") }
