package qemu

import (
	"context"
	"fmt"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu/hotadd"
)

var _ hypervisor.Hotplugger = (*Driver)(nil)

// Hardware is the running VM's hardware, as its QEMU has it now.
func (d *Driver) Hardware(ctx context.Context, id string) (api.VMHardware, error) {
	v, err := d.get(id)
	if err != nil {
		return api.VMHardware{}, err
	}
	if err := v.wrongState("read the hardware of", hypervisor.StateOn, hypervisor.StateSuspended); err != nil {
		return api.VMHardware{}, err
	}
	if err := v.syncHardware(ctx); err != nil {
		return api.VMHardware{}, fmt.Errorf("hardware of vm %s: %w", v.cfg.Name, err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.hw, nil
}

// syncHardware reads the hot-added vCPUs and DIMMs from QEMU itself, so
// that a device added just before an agent died is known all the same.
func (v *vm) syncHardware(ctx context.Context) error {
	hot, dimms, err := hotadd.Plugged(ctx, v)
	if err != nil {
		return err
	}
	v.mu.Lock()
	v.hw.HotCPUs, v.hw.DIMMs = hot, dimms
	v.mu.Unlock()
	return nil
}

// HotAdd plugs vCPUs (device_add of the CPU model, in the next free place
// of the topology) and memory (a pc-dimm on a new RAM backend) into the
// running VM, then asks the guest, through its agent, to bring them
// online. Nothing is ever unplugged.
func (d *Driver) HotAdd(ctx context.Context, id string, cpus int, memoryBytes int64) (hypervisor.HotAddResult, error) {
	var res hypervisor.HotAddResult
	v, err := d.get(id)
	if err != nil {
		return res, err
	}
	name := v.cfg.Name
	switch {
	case v.isIncoming():
		return res, fmt.Errorf("hot-add to vm %s: it is being received by a migration: %w", name, hypervisor.ErrWrongState)
	case v.migrating():
		return res, fmt.Errorf("hot-add to vm %s: it is migrating: %w", name, hypervisor.ErrWrongState)
	}
	if err := v.wrongState("hot-add to", hypervisor.StateOn); err != nil {
		return res, err
	}
	if err := v.syncHardware(ctx); err != nil {
		return res, fmt.Errorf("hot-add to vm %s: %w", name, err)
	}
	v.mu.Lock()
	hw := v.hw
	v.mu.Unlock()
	if cpus == 0 {
		cpus = hw.TotalCPUs()
	}
	if memoryBytes == 0 {
		memoryBytes = int64(hw.TotalMemory())
	}
	if err := hypervisor.CheckHotAdd(name, hw, cpus, api.Size(memoryBytes)); err != nil {
		return res, err
	}
	newCPUs, newMem := cpus-hw.TotalCPUs(), memoryBytes-int64(hw.TotalMemory())
	if newCPUs == 0 && newMem == 0 {
		return hypervisor.HotAddResult{Hardware: hw, Guest: "nothing to add"}, nil
	}
	before := v.guestView(ctx)
	for hw.TotalCPUs() < cpus {
		c, err := hotadd.PlugCPU(ctx, v, hw)
		if err != nil {
			v.save()
			return res, fmt.Errorf("hot-add a vCPU to vm %s: %w", name, err)
		}
		hw.HotCPUs = append(hw.HotCPUs, c)
		v.mu.Lock()
		v.hw.HotCPUs = hw.HotCPUs
		v.mu.Unlock()
	}
	if newMem > 0 {
		if err := hotadd.PlugDIMM(ctx, v, len(hw.DIMMs), newMem); err != nil {
			v.save()
			return res, fmt.Errorf("hot-add %s of memory to vm %s: %w", api.Size(newMem), name, err)
		}
		hw.DIMMs = append(hw.DIMMs, api.Size(newMem))
		v.mu.Lock()
		v.hw.DIMMs = hw.DIMMs
		v.mu.Unlock()
	}
	v.save()
	v.mu.Lock()
	v.cfg.CPUs, v.cfg.MemoryBytes = cpus, memoryBytes // the next boot has them too
	v.mu.Unlock()
	v.log.Info("hot-added", "cpus", newCPUs, "memory", api.Size(newMem))
	return hypervisor.HotAddResult{Hardware: hw, Guest: v.onlineInGuest(ctx, before, cpus, newCPUs, newMem)}, nil
}

// guestView is what the guest has before a hot-add (nil: its agent does
// not answer).
func (v *vm) guestView(ctx context.Context) *hotadd.GuestView {
	if v.guest.Info().State != hypervisor.GuestRunning {
		return nil
	}
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := v.guest.Client(gctx)
	if err != nil {
		return nil
	}
	return hotadd.Look(gctx, c)
}

// onlineInGuest has the guest bring the hardware just added online (see
// hotadd.Online), and says what came of it.
func (v *vm) onlineInGuest(ctx context.Context, before *hotadd.GuestView, cpus, newCPUs int, newMem int64) string {
	if before == nil {
		return "the guest agent does not answer: the guest has the new hardware and must bring it online itself"
	}
	c, err := v.guest.Client(ctx)
	if err != nil {
		return "the guest agent does not answer: " + err.Error()
	}
	return hotadd.Online(ctx, c, before, cpus, newCPUs, newMem)
}
