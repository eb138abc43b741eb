package qemu

import (
	"context"

	"github.com/vdc-project/vdc/internal/hypervisor"
)

// Guest returns what the guest agent told of the guest.
func (d *Driver) Guest(ctx context.Context, id string) (hypervisor.GuestInfo, error) {
	v, err := d.get(id)
	if err != nil {
		return hypervisor.GuestInfo{}, err
	}
	return v.guest.Info(), nil
}

// GuestExec runs a program in the guest through its agent.
func (d *Driver) GuestExec(ctx context.Context, id string, req hypervisor.ExecRequest) (hypervisor.ExecResult, error) {
	v, err := d.get(id)
	if err != nil {
		return hypervisor.ExecResult{}, err
	}
	if err := v.wrongState("exec in", hypervisor.StateOn); err != nil {
		return hypervisor.ExecResult{}, err
	}
	return v.guest.Exec(ctx, req)
}
