package qemu

import (
	"context"

	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu/storage"
)

// MoveDisks mirrors a running VM's disks to new files and switches over.
func (d *Driver) MoveDisks(ctx context.Context, id string, moves []hypervisor.DiskMove) error {
	v, err := d.get(id)
	if err != nil {
		return err
	}
	if err := v.wrongState("move the disks of", hypervisor.StateOn, hypervisor.StateSuspended); err != nil {
		return err
	}
	if err := v.refuseUnfinished(); err != nil {
		return err
	}
	m, err := v.newMigration()
	if err != nil {
		return err
	}
	mctx, cancel := context.WithCancel(context.Background())
	m.Cancel = cancel
	go func() {
		defer close(m.Done)
		defer cancel()
		if err := storage.MoveDisks(mctx, v, m, moves); err != nil {
			m.Fail(err)
			v.log.Warn("disk move failed", "vm", v.cfg.Name, "err", err)
		}
	}()
	return nil
}
