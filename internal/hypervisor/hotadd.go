package hypervisor

import (
	"fmt"

	"github.com/vdc-project/vdc/api"
)

// BootHardware is the hardware a VM starts with from its config: no
// hot-added devices yet, room for them up to the config's maxima, and a
// root port of its own for each NIC not in a hot-plug slot.
func BootHardware(cfg VMConfig) api.VMHardware {
	hw := api.VMHardware{CPUs: cfg.CPUs, MaxCPUs: cfg.MaxCPUs, MemoryBytes: api.Size(cfg.MemoryBytes),
		MaxMemoryBytes: api.Size(cfg.MaxMemoryBytes), VNC: cfg.VNC}
	for _, n := range cfg.NICs {
		if n.Slot == "" {
			hw.NICPorts = append(hw.NICPorts, n.Name)
		}
	}
	return hw
}

// CheckHotAdd says whether a running VM with hardware hw can grow to cpus
// and mem: only up, within the room it was started with.
func CheckHotAdd(name string, hw api.VMHardware, cpus int, mem api.Size) error {
	switch {
	case cpus < hw.TotalCPUs():
		return fmt.Errorf("vm %s has %d vCPUs: they cannot be removed while it runs (the guest may be using them; vCPU hot-remove is not supported); stop it to change that: %w", name, hw.TotalCPUs(), ErrInvalid)
	case mem < hw.TotalMemory():
		return fmt.Errorf("vm %s has %s of memory: it cannot be removed while it runs (the guest may be using it; memory hot-remove is not supported); stop it to change that: %w", name, hw.TotalMemory(), ErrInvalid)
	case cpus > hw.TotalCPUs() && hw.MaxCPUs <= hw.CPUs:
		return fmt.Errorf("vm %s was started without CPU hot-add (no max-cpus): stop it to change its vCPUs, or set max-cpus while it is off: %w", name, ErrWrongState)
	case cpus > hw.TotalCPUs() && cpus > hw.MaxCPUs:
		return fmt.Errorf("vm %s was started with room for at most %d vCPUs (max-cpus), %d asked for: %w", name, hw.MaxCPUs, cpus, ErrInvalid)
	case mem > hw.TotalMemory() && hw.MaxMemoryBytes <= hw.MemoryBytes:
		return fmt.Errorf("vm %s was started without memory hot-add (no max-memory): stop it to change its memory, or set max-memory while it is off: %w", name, ErrWrongState)
	case mem > hw.TotalMemory() && mem > hw.MaxMemoryBytes:
		return fmt.Errorf("vm %s was started with room for at most %s of memory (max-memory), %s asked for: %w", name, hw.MaxMemoryBytes, mem, ErrInvalid)
	case (mem-hw.TotalMemory())%api.MemoryHotplugStep != 0:
		return fmt.Errorf("vm %s: memory is hot-added in steps of %s; %s to add is not one: %w", name, api.MemoryHotplugStep, mem-hw.TotalMemory(), ErrInvalid)
	case mem > hw.TotalMemory() && len(hw.DIMMs) >= api.MaxMemoryHotAdds:
		return fmt.Errorf("vm %s: all its %d memory slots are used (memory was hot-added %d times since it started); stop it to add more: %w", name, api.MaxMemoryHotAdds, len(hw.DIMMs), ErrWrongState)
	}
	return nil
}
