package sim

import (
	"context"
	"fmt"
	"slices"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/hypervisor"
)

var _ hypervisor.Hotplugger = (*Driver)(nil)

// hardware is the running VM's hardware: what it started with and what
// was hot-added since.
func (r *record) hardware() api.VMHardware {
	if r.Hardware != nil {
		hw := *r.Hardware
		hw.HotCPUs, hw.DIMMs = slices.Clone(hw.HotCPUs), slices.Clone(hw.DIMMs)
		return hw
	}
	return hypervisor.BootHardware(r.Config)
}

// HotAdd grows a running VM with the same rules as a real one; the
// simulated guest uses the new vCPUs and memory at once.
func (d *Driver) HotAdd(ctx context.Context, id string, cpus int, memoryBytes int64) (hypervisor.HotAddResult, error) {
	var res hypervisor.HotAddResult
	err := d.storageOp(ctx, "hot-add to", id, func(v *vm, rec *record) error {
		if err := v.notSent(); err != nil {
			return err
		}
		if rec.Power != hypervisor.StateOn {
			return fmt.Errorf("it is %s: %w", rec.Power, hypervisor.ErrWrongState)
		}
		hw := rec.hardware()
		if cpus == 0 {
			cpus = hw.TotalCPUs()
		}
		if memoryBytes == 0 {
			memoryBytes = int64(hw.TotalMemory())
		}
		if err := hypervisor.CheckHotAdd(rec.Config.Name, hw, cpus, api.Size(memoryBytes)); err != nil {
			return err
		}
		for hw.TotalCPUs() < cpus {
			n := hw.TotalCPUs()
			hw.HotCPUs = append(hw.HotCPUs, api.HotCPU{ID: fmt.Sprintf("cpu%d", n), Type: "sim-cpu", Props: map[string]int{"core-id": n}})
		}
		if add := api.Size(memoryBytes) - hw.TotalMemory(); add > 0 {
			hw.DIMMs = append(hw.DIMMs, add)
		}
		rec.Hardware = &hw
		rec.Config.CPUs, rec.Config.MemoryBytes = cpus, memoryBytes
		res = hypervisor.HotAddResult{Hardware: hw, Guest: "the simulated guest uses them at once"}
		return nil
	})
	return res, err
}

// Hardware is the running VM's hardware.
func (d *Driver) Hardware(ctx context.Context, id string) (api.VMHardware, error) {
	if err := d.usable(ctx); err != nil {
		return api.VMHardware{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	v, err := d.lookup(id)
	if err != nil {
		return api.VMHardware{}, fmt.Errorf("hardware of vm %q: %w", id, err)
	}
	if v.rec.Power == hypervisor.StateOff {
		return api.VMHardware{}, fmt.Errorf("hardware of vm %q: it is off: %w", id, hypervisor.ErrWrongState)
	}
	return v.rec.hardware(), nil
}
