package storage

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/hosts"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/retry"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/tasks"
)

// DeleteSnapshot queues the delete of one of a VM's snapshots, which no
// linked clone may depend on.
func (s *Service) DeleteSnapshot(ctx context.Context, vm *api.VM, ref string) (*api.Task, error) {
	snap, err := FindSnapshot(vm, ref)
	if err == nil {
		_, err = s.ready(vm)
	}
	if err == nil {
		err = s.inv.NotMoving(vm)
	}
	if err == nil {
		if deps := s.dependentsOf(vm, snap.Disks); len(deps) > 0 {
			err = api.Errorf(api.ErrConflict, "linked clones depend on snapshot %s: %s; delete them first", snap.Name, strings.Join(inventory.FirstN(deps, 10), ", "))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("delete snapshot of vm %s: %w", vm.Metadata.Name, err)
	}
	return s.submit(ctx, tasks.New(ctx, api.OpSnapshotDelete, vm, snapshotDeleteParams{Snapshot: snap.ID}))
}

// hide marks a snapshot deleted (its name is free again); it keeps its
// record while its data is needed.
func hide(spec *api.VMSpec, id string) {
	for i := range spec.Snapshots {
		if sn := &spec.Snapshots[i]; sn.ID == id {
			sn.Hidden = true
		}
	}
}

// snapshotDelete is a snapshot delete under way: the VM as last recorded,
// and whether the snapshot is still to be hidden.
type snapshotDelete struct {
	t     *tasks.Run
	vm    *api.VM
	h     *api.Host
	id    string
	first bool
	res   api.SnapshotResult
}

func (s *Service) runSnapshotDelete(ctx context.Context, t *tasks.Run) (any, error) {
	var p snapshotDeleteParams
	if err := t.Params(&p); err != nil {
		return nil, err
	}
	vm, h, err := s.inv.LoadVM(ctx, t)
	if err != nil {
		return nil, err
	}
	sn := taskSnapshot(vm, p.Snapshot)
	d := &snapshotDelete{t: t, vm: vm, h: h, id: p.Snapshot, first: sn != nil && !sn.Hidden, res: api.SnapshotResult{Snapshot: p.Snapshot}}
	if !d.first && !t.Resumed {
		return nil, api.Errorf(api.ErrNotFound, "vm %s no longer has snapshot %s", vm.Metadata.Name, p.Snapshot)
	}
	// Else hidden before the server restarted: what is left is merging
	// away the data of the hidden snapshots.
	if sn != nil {
		d.res.Snapshot, d.id = sn.Name, sn.ID
	}
	for n := 0; n < 2*MaxSnapshots+2; n++ {
		done, err := s.collectOnce(ctx, d, n)
		if err != nil {
			return nil, err
		}
		if done {
			return d.res, nil
		}
	}
	return d.res, nil
}

// collectOnce plans and runs one step of a delete and records it; done
// says there is nothing left to do.
func (s *Service) collectOnce(ctx context.Context, d *snapshotDelete, n int) (done bool, err error) {
	vm := d.vm
	spec := vm.Spec
	if d.first {
		spec.Snapshots = slices.Clone(spec.Snapshots)
		hide(&spec, d.id)
	}
	dep := func(absPath string) bool { return len(s.dependents(vm.Metadata.ID, absPath)) > 0 }
	step, err := planCollect(spec, vm.Status.PowerState != api.PowerOff, s.absFunc(), dep)
	if err != nil {
		return true, fmt.Errorf("delete snapshot %s of vm %s: %w", d.res.Snapshot, vm.Metadata.Name, err)
	}
	if step == nil {
		if d.first && !d.t.Resumed {
			// Its data still has two branches on it: it is only hidden.
			d.res.Kept = "its data stays until one of the branches that use it is deleted"
			return true, state.UpdateKind(ctx, s.st, nil, api.KindVM, vm.Metadata.ID, func(o api.Object) error {
				hide(&o.(*api.VM).Spec, d.id)
				return nil
			})
		}
		return true, nil
	}
	d.t.Announce(ctx, min(10+10*n, 90), step.what)
	if err := s.runStep(ctx, d.t, vm, d.h, step); err != nil {
		return true, fmt.Errorf("delete snapshot %s of vm %s: %s: %w", d.res.Snapshot, vm.Metadata.Name, step.what, err)
	}
	for _, m := range step.merges {
		d.res.Merged = append(d.res.Merged, filepath.Base(m.Top))
	}
	// Record the step: the spec always says which files hold what.
	hidden := d.first
	if err := state.UpdateKind(ctx, s.st, nil, api.KindVM, vm.Metadata.ID, func(o api.Object) error {
		v := o.(*api.VM)
		if hidden {
			hide(&v.Spec, d.id)
		}
		step.apply(&v.Spec)
		return nil
	}); err != nil {
		return true, err
	}
	d.first = false
	if d.vm, err = state.Read[*api.VM](ctx, s.st, vm.Metadata.ID); err != nil {
		return true, err
	}
	return false, nil
}

// waitHost runs fn until it is done or fails otherwise than with a host
// that does not answer, for up to the service's HostWait.
func (s *Service) waitHost(ctx context.Context, t *tasks.Run, h *api.Host, what string, fn func() error) error {
	deadline := time.Now().Add(s.hostWait)
	return retry.Every(ctx, 0, s.retryEvery, func() error {
		err := fn()
		switch {
		case err == nil:
			return nil
		case !errors.Is(err, api.ErrUnavailable) || time.Now().After(deadline):
			return retry.Stop(err)
		}
		t.Progress(ctx, t.Task.Progress, what+": waiting for host "+h.Metadata.Name+" to answer again")
		return err
	})
}

// runStep performs one step of a snapshot delete on the VM's host,
// waiting for a host that is restarting: merges are idempotent.
func (s *Service) runStep(ctx context.Context, t *tasks.Run, vm *api.VM, h *api.Host, st *collectStep) error {
	for _, m := range st.merges {
		merge := func() error { return s.hosts.MergeDisk(ctx, hosts.TargetOf(h), vm.Metadata.ID, m) }
		// QEMU may have died under the merge: once the host has seen it
		// go, it finishes the merge offline. So a failed merge is tried
		// again, 3 times.
		var last error
		tries := 0
		if err := retry.Every(ctx, 4, s.retryEvery, func() error {
			if tries++; tries > 1 {
				s.log.Warn("disk merge failed; trying again", "vm", vm.Metadata.Name, "top", m.Top, "err", last)
			}
			last = s.waitHost(ctx, t, h, "merging "+filepath.Base(m.Top), merge)
			return last
		}); err != nil {
			return err
		}
	}
	return s.waitHost(ctx, t, h, "removing files", func() error { return s.hosts.RemoveFiles(ctx, hosts.TargetOf(h), st.remove) })
}
