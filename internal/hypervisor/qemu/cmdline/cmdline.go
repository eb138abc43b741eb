// Package cmdline builds the QEMU command line of a VM: machine, vCPUs and
// memory (with room for hot-add), the driver's channels (QMP, serial
// console, guest agent), display, disks on their buses, CD-ROMs and NICs.
// It is pure: same config, same line (golden tests in testdata hold it).
// The driver (package qemu) runs what it builds; the device names it
// gives (hot-plug ports, DIMMs) are the ones the driver hot-plugs into.
package cmdline

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/google/uuid"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/hypervisor"
)

// CPUModel is the vCPU model every VM gets: a common baseline, so that a
// VM can later move between hosts whatever their CPUs.
const CPUModel = "qemu64"

// memorySlots is how many DIMM slots a VM with memory hot-add gets.
const memorySlots = api.MaxMemoryHotAdds

// Files are the files a VM's command line names: the sockets of its QMP
// monitor, guest agent, serial console and display, the console's log,
// the pid file and the cloud-init seed ISO.
type Files struct {
	QMP, QGA, Console, ConsoleLog, VNC, PIDFile, Seed string
}

// Args builds the QEMU command line for a VM with the hardware hw (see
// hypervisor.BootHardware), its files at f, on the accelerator accel.
func Args(cfg hypervisor.VMConfig, hw api.VMHardware, f Files, accel string) []string {
	a := machineArgs(cfg, hw, f, accel)
	a = append(a, displayArgs(hw, f)...)
	a = append(a, hotAddedArgs(hw)...)
	a = append(a, kernelArgs(cfg)...)
	a = append(a, hotplugPortArgs()...)
	disks, sata := diskArgs(cfg)
	a = append(a, disks...)
	a = append(a, cdArgs(cfg, f, sata)...)
	a = append(a, nicArgs(cfg, hw)...)
	return a
}

// machineArgs are the machine, its vCPUs and memory, and the channels the
// driver talks to it through (QMP, serial console, guest agent).
func machineArgs(cfg hypervisor.VMConfig, hw api.VMHardware, f Files, accel string) []string {
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
		"-uuid", SMBIOSUUID(cfg.ID),
		"-machine", "q35",
		"-accel", accel,
		"-cpu", CPUModel,
		"-smp", smp,
		"-m", mem,
		"-nodefaults", "-no-user-config",
		"-pidfile", f.PIDFile,
		"-rtc", "base=utc",
		"-msg", "timestamp=on",
		"-chardev", "socket,id=qmp0,path=" + f.QMP + ",server=on,wait=off",
		"-mon", "chardev=qmp0,mode=control",
		"-chardev", "socket,id=con0,path=" + f.Console + ",server=on,wait=off,logfile=" + f.ConsoleLog + ",logappend=on",
		"-serial", "chardev:con0",
		"-device", "virtio-serial-pci,id=vser0",
		"-chardev", "socket,id=qga0,path=" + f.QGA + ",server=on,wait=off",
		"-device", "virtserialport,bus=vser0.0,chardev=qga0,name=org.qemu.guest_agent.0",
		"-device", "virtio-rng-pci,id=rng0",
	}
}

// displayArgs: the display is a unix socket in the VM's runtime directory
// (0700): never a TCP port, which VNC would serve to anyone without a
// password. The agent relays it to the server, the server to its clients.
func displayArgs(hw api.VMHardware, f Files) []string {
	if hw.VNC {
		return []string{"-vga", "std", "-vnc", "unix:" + escape(f.VNC)}
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
		a = append(a, "-object", fmt.Sprintf("memory-backend-ram,id=%s,size=%dM", DIMMBackend(i), size>>20),
			"-device", fmt.Sprintf("pc-dimm,id=%s,memdev=%s", DIMMID(i), DIMMBackend(i)))
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
	for i := 0; i < HotplugPorts; i++ {
		a = append(a, "-device", fmt.Sprintf("pcie-root-port,id=%s,chassis=%d,bus=pcie.0", HotplugPort(i), i+1))
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
func cdArgs(cfg hypervisor.VMConfig, f Files, sata int) []string {
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
			"-blockdev", fmt.Sprintf("driver=file,filename=%s,node-name=seed0-file,read-only=on", escape(f.Seed)),
			"-blockdev", "driver=raw,file=seed0-file,node-name=seed0,read-only=on",
			"-device", fmt.Sprintf("ide-cd,bus=ide.%d,drive=seed0,id=seed0-dev", sata),
		)
	}
	return a
}

// NetdevID is the ID of a NIC's -netdev (its backend in QEMU).
func NetdevID(nic string) string { return "net-" + nic }

// NICPort is the ID of the root port a NIC the VM started with sits in,
// alone, so that it can be unplugged while the VM runs.
func NICPort(nic string) string { return "np-" + nic }

// Device is the QEMU device driver of a NIC model.
func Device(model string) string {
	switch model {
	case "", api.NICVirtio:
		return "virtio-net-pci"
	}
	return model // e1000, rtl8139
}

// Netdev is the -netdev option of a NIC: the tap the agent made and
// plugged into the NIC's port group, or QEMU's user-mode networking (NAT)
// for a port group on no switch.
func Netdev(id string, n hypervisor.NICConfig) string {
	if n.Tap == "" {
		return "user,id=" + id
	}
	s := fmt.Sprintf("tap,id=%s,ifname=%s,script=no,downscript=no", id, n.Tap)
	if n.NoOffloads {
		s += ",vnet_hdr=off"
	}
	return s
}

// nicArgs are the VM's network cards: each in the hot-plug port it was
// plugged into, or in a root port of its own when hw has one for it (the
// ports of NICs removed since stay, empty, as the running VM has them),
// else (a VM started by an older vdc) on the root bus.
func nicArgs(cfg hypervisor.VMConfig, hw api.VMHardware) []string {
	var a []string
	for i, name := range hw.NICPorts {
		a = append(a, "-device", fmt.Sprintf("pcie-root-port,id=%s,chassis=%d,bus=pcie.0", NICPort(name), nicChassis+i))
	}
	for _, n := range cfg.NICs {
		bus := ""
		switch {
		case n.Slot != "":
			bus = ",bus=" + n.Slot
		case slices.Contains(hw.NICPorts, n.Name):
			bus = ",bus=" + NICPort(n.Name)
		}
		a = append(a, "-netdev", Netdev(NetdevID(n.Name), n),
			"-device", fmt.Sprintf("%s,netdev=%s,mac=%s,id=%s%s", Device(n.Model), NetdevID(n.Name), n.MAC, n.Name, bus))
	}
	return a
}

// nicChassis is the chassis number of the first NIC root port, past the
// hot-plug ports'.
const nicChassis = 16

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

// DIMMID is the device ID of the i-th hot-added DIMM, DIMMBackend its
// memory backend's.
func DIMMID(i int) string      { return fmt.Sprintf("dimm%d", i) }
func DIMMBackend(i int) string { return "mem-" + DIMMID(i) }

// escape doubles commas, QEMU's way of quoting them in option values.
func escape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// SMBIOSUUID is the UUID QEMU gets for a VM (the guest sees it in SMBIOS,
// and the agent recognizes the VM's process by it): the VM's ID when that
// is a UUID, as vdc's IDs are, else one derived from it.
func SMBIOSUUID(id string) string {
	if u, err := uuid.Parse(id); err == nil {
		return u.String()
	}
	return uuid.NewSHA1(uuid.NameSpaceOID, []byte("vdc-vm:"+id)).String()
}

// HotplugPorts is how many empty PCIe root ports every VM gets, for disks
// and NICs added while it runs (q35's root bus itself is not hot-pluggable).
const HotplugPorts = 4

// HotplugPort is the ID of the i-th empty root port.
func HotplugPort(i int) string { return fmt.Sprintf("hp%d", i) }
