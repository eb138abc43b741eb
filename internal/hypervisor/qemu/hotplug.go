package qemu

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/disk"
	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu/blockjob"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu/cmdline"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu/diskfile"
)

// AddDisk makes the disk's file and, when the VM runs, plugs it in: a
// virtio disk goes into a free PCIe root port, a SCSI one onto the
// VM's SCSI controller. SATA disks cannot be hot-plugged.
func (d *Driver) AddDisk(ctx context.Context, id string, dc hypervisor.DiskConfig) (err error) {
	v, err := d.get(id)
	if err != nil {
		return err
	}
	if _, err := v.Disk(dc.Name); err == nil {
		return fmt.Errorf("add disk %s to vm %s: it has one of that name: %w", dc.Name, v.cfg.Name, hypervisor.ErrInvalid)
	}
	running := v.powerState() != hypervisor.StateOff
	if running && dc.Bus == api.BusSATA {
		return fmt.Errorf("add disk %s to vm %s: SATA disks cannot be added while it runs; use virtio or scsi, or stop it: %w", dc.Name, v.cfg.Name, hypervisor.ErrWrongState)
	}
	v.mu.Lock()
	hasSCSI := false
	for _, x := range v.cfg.Disks {
		hasSCSI = hasSCSI || x.Bus == api.BusSCSI
	}
	v.mu.Unlock()
	if running && dc.Bus == api.BusSCSI && !hasSCSI {
		return fmt.Errorf("add disk %s to vm %s: it has no SCSI controller yet; add a virtio disk, or stop it: %w", dc.Name, v.cfg.Name, hypervisor.ErrWrongState)
	}
	_, statErr := os.Stat(dc.Path)
	if err := diskfile.MakeEmpty(ctx, dc); err != nil {
		return fmt.Errorf("add disk %s to vm %s: %w", dc.Name, v.cfg.Name, err)
	}
	defer func() {
		if err != nil && statErr != nil {
			_ = os.Remove(dc.Path)
		}
	}()
	if running {
		if err := v.plug(ctx, dc); err != nil {
			return fmt.Errorf("hot-plug disk %s into vm %s: %w", dc.Name, v.cfg.Name, err)
		}
	}
	v.mu.Lock()
	v.cfg.Disks = append(v.cfg.Disks, dc)
	v.mu.Unlock()
	return nil
}

func (v *vm) plug(ctx context.Context, dc hypervisor.DiskConfig) error {
	node := dc.Name
	if err := v.command(ctx, "blockdev-add", map[string]any{"driver": "qcow2", "node-name": node, "discard": "unmap",
		"file": map[string]any{"driver": "file", "node-name": node + "-file", "filename": dc.Path, "discard": "unmap"}}); err != nil {
		return err
	}
	dev := map[string]any{"id": node + "-dev", "drive": node}
	if dc.Bus == api.BusSCSI {
		dev["driver"], dev["bus"] = "scsi-hd", "scsi0.0"
	} else {
		port := dc.Slot
		if port == "" {
			var err error
			if port, err = v.freePort(ctx); err != nil {
				blockjob.Drop(v, node)
				return err
			}
		}
		dev["driver"], dev["bus"] = "virtio-blk-pci", port
	}
	if err := v.command(ctx, "device_add", dev); err != nil {
		_ = v.command(context.Background(), "blockdev-del", map[string]any{"node-name": node})
		_ = v.command(context.Background(), "blockdev-del", map[string]any{"node-name": node + "-file"})
		return err
	}
	return nil
}

// freePort finds a hot-plug root port with nothing in it.
func (v *vm) freePort(ctx context.Context) (string, error) {
	var buses []struct {
		Devices []struct {
			QDevID    string `json:"qdev_id"`
			PCIBridge *struct {
				Devices []json.RawMessage `json:"devices"`
			} `json:"pci_bridge"`
		} `json:"devices"`
	}
	if err := v.query(ctx, "query-pci", &buses); err != nil {
		return "", err
	}
	for i := 0; i < cmdline.HotplugPorts; i++ {
		for _, b := range buses {
			for _, dev := range b.Devices {
				if dev.QDevID == cmdline.HotplugPort(i) && (dev.PCIBridge == nil || len(dev.PCIBridge.Devices) == 0) {
					return cmdline.HotplugPort(i), nil
				}
			}
		}
	}
	return "", fmt.Errorf("all %d hot-plug slots are taken; stop the VM to add more disks or NICs", cmdline.HotplugPorts)
}

// ResizeDisk grows a disk: block_resize while the VM runs (the guest sees
// the new size at once), qemu-img resize when it is off.
func (d *Driver) ResizeDisk(ctx context.Context, id, name string, size int64) error {
	v, err := d.get(id)
	if err != nil {
		return err
	}
	dc, err := v.Disk(name)
	if err != nil {
		return fmt.Errorf("resize: %w", err)
	}
	info, err := disk.Inspect(ctx, dc.Path)
	if err != nil {
		return fmt.Errorf("resize disk %s of vm %s: %w", name, v.cfg.Name, err)
	}
	switch {
	case size == info.VirtualSize:
		return nil
	case size < info.VirtualSize:
		return fmt.Errorf("resize disk %s of vm %s: it is %s; disks only grow: %w", name, v.cfg.Name, api.Size(info.VirtualSize), hypervisor.ErrInvalid)
	}
	if dc.Thick {
		if err := diskfile.CheckRoom(filepath.Dir(dc.Path), size-info.VirtualSize, "grow thick disk "+name); err != nil {
			return err
		}
	}
	if v.powerState() == hypervisor.StateOff {
		err = disk.Resize(ctx, dc.Path, size)
	} else {
		var node string
		if node, err = v.node(ctx, name); err == nil {
			err = v.command(ctx, "block_resize", map[string]any{"node-name": node, "size": size})
		}
	}
	if err != nil {
		return fmt.Errorf("resize disk %s of vm %s: %w", name, v.cfg.Name, err)
	}
	v.mu.Lock()
	if i := v.diskIndex(name); i >= 0 {
		v.cfg.Disks[i].SizeBytes = size
	}
	v.mu.Unlock()
	return nil
}

// RemoveDisk unplugs a disk (the guest lets go of it first) or, when the
// VM is off, drops it from the definition. The file stays.
func (d *Driver) RemoveDisk(ctx context.Context, id, name string) error {
	v, err := d.get(id)
	if err != nil {
		return err
	}
	dc, err := v.Disk(name)
	if err != nil {
		return fmt.Errorf("remove: %w", err)
	}
	if v.powerState() != hypervisor.StateOff {
		if dc.Bus == api.BusSATA {
			return fmt.Errorf("remove disk %s of vm %s: SATA disks cannot be unplugged while it runs: %w", name, v.cfg.Name, hypervisor.ErrWrongState)
		}
		if err := v.unplug(ctx, name); err != nil {
			return fmt.Errorf("unplug disk %s of vm %s: %w", name, v.cfg.Name, err)
		}
	}
	v.mu.Lock()
	if i := v.diskIndex(name); i >= 0 {
		v.cfg.Disks = append(v.cfg.Disks[:i], v.cfg.Disks[i+1:]...)
	}
	v.mu.Unlock()
	return nil
}

func (v *vm) unplug(ctx context.Context, name string) error {
	node, err := v.node(ctx, name)
	if err != nil {
		return err
	}
	if err := v.deleteDevice(ctx, name+"-dev", "the disk"); err != nil {
		return err
	}
	_ = v.command(ctx, "blockdev-del", map[string]any{"node-name": node})
	if node == name {
		_ = v.command(ctx, "blockdev-del", map[string]any{"node-name": name + "-file"})
	} else {
		_ = v.command(ctx, "blockdev-del", map[string]any{"node-name": node + "-file"})
	}
	return nil
}
