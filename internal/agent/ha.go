package agent

import (
	"context"
	"errors"

	"github.com/vdc-project/vdc/internal/hypervisor"
)

// dropVMs stops and forgets VMs that HA restarted on another host while
// this one was cut off. Their disks stay: the other copy uses them.
func (a *Agent) dropVMs(ctx context.Context, ids []string) {
	if len(ids) == 0 {
		return
	}
	m, err := a.migrator()
	if err != nil {
		return
	}
	for _, id := range ids {
		e, err := a.vms.Get(id)
		if err != nil {
			continue
		}
		err = a.vms.Release(ctx, m, id, false)
		if err != nil && !errors.Is(err, hypervisor.ErrNotFound) {
			a.log.Error("cannot drop a VM that now runs on another host", "vm", e.Cfg.Name, "err", err)
			continue
		}
		a.log.Warn("dropped a VM that HA restarted on another host while this one was cut off", "vm", e.Cfg.Name)
	}
}
