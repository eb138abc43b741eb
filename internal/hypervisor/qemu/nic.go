package qemu

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu/cmdline"
)

var _ hypervisor.NICs = (*Driver)(nil)

// releaseTimeout is how long a guest has to let go of a device being
// unplugged (Linux's pciehp takes about 5 s).
const releaseTimeout = 60 * time.Second

// AddNIC adds a NIC and, when the VM runs, plugs it in: its backend
// (the tap the agent made, or user-mode networking) with netdev_add, then
// the card with device_add in a free hot-plug root port.
func (d *Driver) AddNIC(ctx context.Context, id string, n hypervisor.NICConfig) error {
	v, err := d.get(id)
	if err != nil {
		return err
	}
	v.mu.Lock()
	exists := hypervisor.NICIndex(v.cfg, n.Name) >= 0
	v.mu.Unlock()
	if exists {
		return fmt.Errorf("add %s to vm %s: it has a NIC of that name: %w", n.Name, v.cfg.Name, hypervisor.ErrInvalid)
	}
	if v.powerState() != hypervisor.StateOff {
		if n.Slot == "" {
			if n.Slot, err = v.freePort(ctx); err != nil {
				return fmt.Errorf("hot-plug %s into vm %s: %w", n.Name, v.cfg.Name, err)
			}
		}
		if err := v.plugNIC(ctx, n); err != nil {
			return fmt.Errorf("hot-plug %s into vm %s: %w", n.Name, v.cfg.Name, err)
		}
	}
	v.mu.Lock()
	v.cfg.NICs = append(v.cfg.NICs, n)
	v.mu.Unlock()
	return nil
}

func (v *vm) plugNIC(ctx context.Context, n hypervisor.NICConfig) error {
	nd := cmdline.NetdevID(n.Name)
	if err := v.command(ctx, "netdev_add", netdevArgs(cmdline.Netdev(nd, n))); err != nil {
		return err
	}
	dev := map[string]any{"driver": cmdline.Device(n.Model), "id": n.Name, "netdev": nd, "mac": n.MAC, "bus": n.Slot}
	if err := v.command(ctx, "device_add", dev); err != nil {
		_ = v.command(context.Background(), "netdev_del", map[string]any{"id": nd})
		return err
	}
	if n.LinkDown {
		if err := v.setLink(ctx, n.Name, false); err != nil {
			return err
		}
	}
	return nil
}

// netdevArgs turns a -netdev option ("tap,id=net-nic1,ifname=vt…,
// vnet_hdr=off") into netdev_add's arguments, so that a hot-plugged NIC's
// backend is the one its next start gives it: on and off are booleans
// there.
func netdevArgs(opt string) map[string]any {
	parts := strings.Split(opt, ",")
	args := map[string]any{"type": parts[0]}
	for _, p := range parts[1:] {
		k, v, _ := strings.Cut(p, "=")
		switch v {
		case "on":
			args[k] = true
		case "off":
			args[k] = false
		default:
			args[k] = v
		}
	}
	return args
}

// setLink plugs (up) or unplugs the NIC's virtual cable: the guest sees
// its carrier come and go.
func (v *vm) setLink(ctx context.Context, nic string, up bool) error {
	return v.command(ctx, "set_link", map[string]any{"name": nic, "up": up})
}

// applyLinks unplugs the cables of the NICs the config has down, in a
// QEMU just started (QEMU has no option for it).
func (v *vm) applyLinks(ctx context.Context) error {
	v.mu.Lock()
	nics := v.cfg.NICs
	v.mu.Unlock()
	for _, n := range nics {
		if n.LinkDown {
			if err := v.setLink(ctx, n.Name, false); err != nil {
				return fmt.Errorf("set the link of %s down: %w", n.Name, err)
			}
		}
	}
	return nil
}

// UpdateNIC changes a NIC's link (set_link while the VM runs) and what it
// is attached to (nothing for QEMU: the agent moved its tap).
func (d *Driver) UpdateNIC(ctx context.Context, id string, n hypervisor.NICConfig) error {
	v, err := d.get(id)
	if err != nil {
		return err
	}
	v.mu.Lock()
	i := hypervisor.NICIndex(v.cfg, n.Name)
	var old hypervisor.NICConfig
	if i >= 0 {
		old = v.cfg.NICs[i]
	}
	v.mu.Unlock()
	if i < 0 {
		return fmt.Errorf("update: vm %s has no NIC %s: %w", v.cfg.Name, n.Name, hypervisor.ErrInvalid)
	}
	n.Slot = old.Slot // where it sits is not the caller's to change
	if v.powerState() != hypervisor.StateOff {
		if err := hypervisor.CheckNICUpdate(v.cfg.Name, old, n); err != nil {
			return err
		}
		if old.LinkDown != n.LinkDown {
			if err := v.setLink(ctx, n.Name, !n.LinkDown); err != nil {
				return fmt.Errorf("set the link of %s of vm %s: %w", n.Name, v.cfg.Name, err)
			}
		}
	}
	v.mu.Lock()
	if i := hypervisor.NICIndex(v.cfg, n.Name); i >= 0 {
		v.cfg.NICs[i] = n
	}
	v.mu.Unlock()
	return nil
}

// RemoveNIC unplugs a NIC from a running VM (once the guest let go of
// it, its backend goes too) or drops it from the definition.
func (d *Driver) RemoveNIC(ctx context.Context, id, name string) error {
	v, err := d.get(id)
	if err != nil {
		return err
	}
	v.mu.Lock()
	i := hypervisor.NICIndex(v.cfg, name)
	var n hypervisor.NICConfig
	if i >= 0 {
		n = v.cfg.NICs[i]
	}
	ports := v.hw.NICPorts
	v.mu.Unlock()
	if i < 0 {
		return fmt.Errorf("remove: vm %s has no NIC %s: %w", v.cfg.Name, name, hypervisor.ErrInvalid)
	}
	if v.powerState() != hypervisor.StateOff {
		if !hypervisor.Unpluggable(n, ports) {
			return fmt.Errorf("remove %s of vm %s: it sits on the machine's root bus, which takes no hot-unplug (the VM was started by an older vdc); stop the VM to remove it: %w",
				name, v.cfg.Name, hypervisor.ErrWrongState)
		}
		if err := v.unplugNIC(ctx, name); err != nil {
			return fmt.Errorf("unplug %s of vm %s: %w", name, v.cfg.Name, err)
		}
	}
	v.mu.Lock()
	if i := hypervisor.NICIndex(v.cfg, name); i >= 0 {
		v.cfg.NICs = append(v.cfg.NICs[:i], v.cfg.NICs[i+1:]...)
	}
	v.mu.Unlock()
	return nil
}

func (v *vm) unplugNIC(ctx context.Context, name string) error {
	// The backend's ID as QEMU has it (a QEMU started by an older vdc
	// numbered them).
	var nd string
	if err := v.Execute(ctx, "qom-get", map[string]any{"path": "/machine/peripheral/" + name, "property": "netdev"}, &nd); err != nil {
		return err
	}
	if err := v.deleteDevice(ctx, name, "the NIC"); err != nil {
		return err
	}
	return v.command(ctx, "netdev_del", map[string]any{"id": nd})
}

// deleteDevice asks for a device to be unplugged and waits until QEMU says
// it is gone (DEVICE_DELETED): the guest has to let go of a PCIe device
// first, and one that never does keeps it.
func (v *vm) deleteDevice(ctx context.Context, id, what string) error {
	v.mu.Lock()
	q := v.qmp
	v.mu.Unlock()
	if q == nil {
		return fmt.Errorf("vm %s has no running QEMU: %w", v.cfg.Name, hypervisor.ErrWrongState)
	}
	events, unsubscribe := q.Subscribe()
	defer unsubscribe()
	if err := v.command(ctx, "device_del", map[string]any{"id": id}); err != nil {
		return err
	}
	deadline := time.NewTimer(releaseTimeout)
	defer deadline.Stop()
	for {
		select {
		case e, ok := <-events:
			if !ok {
				return fmt.Errorf("QEMU went away")
			}
			if e.Name == "DEVICE_DELETED" {
				var dd struct {
					Device string `json:"device"`
				}
				_ = json.Unmarshal(e.Data, &dd)
				if dd.Device == id {
					return nil
				}
			}
		case <-deadline.C:
			return fmt.Errorf("the guest did not release %s within %s (is it in use?)", what, releaseTimeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
