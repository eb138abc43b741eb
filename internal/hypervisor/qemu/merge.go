package qemu

import (
	"context"
	"fmt"
	"strings"

	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu/storage"
)

// MergeDisk merges Top into Base (see storage.Merge).
func (d *Driver) MergeDisk(ctx context.Context, id string, m hypervisor.DiskMerge) error {
	v, err := d.get(id)
	if err != nil {
		return err
	}
	return storage.Merge(ctx, v, m, d.opt.MergeBandwidth)
}

// HasQEMU says whether the VM has a running QEMU.
func (v *vm) HasQEMU() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.qmp != nil
}

// unfinishedMerge names a disk whose merge was interrupted, if any.
func (v *vm) unfinishedMerge() string { return storage.UnfinishedMerge(v.cfg.Dir) }

// refuseUnfinished keeps a VM with an interrupted merge from starting.
func (v *vm) refuseUnfinished() error {
	if u := v.unfinishedMerge(); u != "" {
		return fmt.Errorf("vm %s has an unfinished disk merge of %s; delete the snapshot again to finish it: %w",
			v.cfg.Name, strings.TrimSpace(u), hypervisor.ErrWrongState)
	}
	return nil
}
