package vms

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/hosts"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/placement"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/tasks"
	"github.com/vdc-project/vdc/internal/store"
)

// refused says the host turned a request down before doing anything: it
// needs no undo on the host.
func refused(err error) bool {
	return errors.Is(err, api.ErrInvalid) || errors.Is(err, api.ErrConflict) || errors.Is(err, api.ErrNotSupported) || errors.Is(err, api.ErrNotFound)
}

// releaseNICKeys lets go of the keys a NIC's MAC (if mac is set) and
// address (if ip is set) held, for a NIC that is not recorded after all.
func (s *Service) releaseNICKeys(ctx context.Context, mac, pgID, ip string) {
	txn := s.st.Store.Txn()
	if mac != "" {
		txn.DeleteRaw(placement.MACKey(mac))
	}
	if ip != "" {
		txn.DeleteRaw(placement.IPKey(pgID, ip))
	}
	if _, err := txn.Commit(ctx); err != nil {
		s.log.Error("cannot release the MAC and address of a NIC not made", "mac", mac, "ip", ip, "err", err)
	}
}

// runNICAdd is the vm.nic-add task: the host adds the NIC (plugged into
// the running VM), then it is recorded; if the host could not, the MAC
// and address go back.
func (s *Service) runNICAdd(ctx context.Context, t *tasks.Run) (any, error) {
	var p nicAddParams
	if err := t.Params(&p); err != nil {
		return nil, err
	}
	n := p.NIC
	vm, h, err := s.inv.LoadVM(ctx, t)
	if err == nil && slices.ContainsFunc(vm.Spec.NICs, func(x api.VMNIC) bool { return x.Name == n.Name && x.MAC == n.MAC }) {
		return n.Name, nil // added before the server restarted
	}
	if err == nil && running(vm) && n.Slot == "" {
		// Started since the request: the NIC needs a slot after all.
		if n.Slot = s.inv.FreeSlot(vm); n.Slot == "" {
			err = api.Errorf(api.ErrConflict, "vm %s was started since and has no free hot-plug slot; stop it to add more", vm.Metadata.Name)
		}
	}
	if err == nil {
		what := "adding " + n.Name
		if running(vm) {
			what = fmt.Sprintf("plugging %s into the running VM on host %s", n.Name, h.Metadata.Name)
		}
		t.Progress(ctx, 20, what)
		var st api.AgentVMState
		st, err = s.hosts.AddNIC(ctx, hosts.TargetOf(h), vm.Metadata.ID, s.inv.NICConfig(n))
		if err == nil {
			t.Stage(api.KindVM, vm.Metadata.ID, func(o api.Object) error {
				v := o.(*api.VM)
				v.Spec.NICs = append(v.Spec.NICs, n)
				return nil
			})
			t.Stage(api.KindVM, vm.Metadata.ID, inventory.VMStateChange(st))
			return n.Name, nil
		}
		if t.Leader.Err() != nil {
			return nil, err // the next leader resumes it
		}
		if !refused(err) {
			// It may have got there: take it out again.
			if _, rerr := s.hosts.RemoveNIC(ctx, hosts.TargetOf(h), vm.Metadata.ID, n.Name); rerr != nil && !refused(rerr) {
				s.log.Warn("cannot undo the add of a NIC", "vm", vm.Metadata.Name, "nic", n.Name, "err", rerr)
			}
		}
		err = fmt.Errorf("add %s to vm %s on host %s: %w", n.Name, vm.Metadata.Name, h.Metadata.Name, err)
	}
	s.releaseNICKeys(context.WithoutCancel(ctx), n.MAC, n.PortGroup.ID, n.IPv4)
	return nil, err
}

// runNICRemove is the vm.nic-remove task: the host unplugs the NIC (the
// guest lets go of it first), then it leaves the VM with its MAC and
// address.
func (s *Service) runNICRemove(ctx context.Context, t *tasks.Run) (any, error) {
	var p nicRemoveParams
	if err := t.Params(&p); err != nil {
		return nil, err
	}
	vm, h, err := s.inv.LoadVM(ctx, t)
	if err != nil {
		return nil, err
	}
	n, err := findNIC(vm, p.NIC)
	if err != nil {
		if t.Resumed {
			return nil, nil // removed before the server restarted
		}
		return nil, err
	}
	msg := "removing " + n.Name
	if running(vm) {
		msg = "waiting for the guest to release " + n.Name
	}
	t.Progress(ctx, 20, msg)
	st, err := s.hosts.RemoveNIC(ctx, hosts.TargetOf(h), vm.Metadata.ID, n.Name)
	if err != nil && !(t.Resumed && errors.Is(err, api.ErrInvalid)) {
		return nil, fmt.Errorf("remove %s of vm %s on host %s: %w", n.Name, vm.Metadata.Name, h.Metadata.Name, err)
	}
	gone := *n
	release := func() *store.Txn {
		txn := s.st.Store.Txn().DeleteRaw(placement.MACKey(gone.MAC))
		if gone.IPv4 != "" {
			txn.DeleteRaw(placement.IPKey(gone.PortGroup.ID, gone.IPv4))
		}
		return txn
	}
	if err := state.Update(ctx, s.st, release, vm.Metadata.ID, func(v *api.VM) error {
		v.Spec.NICs = slices.DeleteFunc(v.Spec.NICs, func(x api.VMNIC) bool { return x.Name == gone.Name })
		return nil
	}); err != nil {
		return nil, fmt.Errorf("record the removal of %s of vm %s: %w", gone.Name, vm.Metadata.Name, err)
	}
	if st.ID != "" {
		t.Stage(api.KindVM, vm.Metadata.ID, inventory.VMStateChange(st))
	}
	return nil, nil
}

// runNICUpdate is the vm.nic-update task: the host moves the NIC's tap to
// its new port group and sets its link, then the NIC is recorded so; the
// address on the old port group is let go, or on failure the new one.
func (s *Service) runNICUpdate(ctx context.Context, t *tasks.Run) (any, error) {
	var p nicUpdateParams
	if err := t.Params(&p); err != nil {
		return nil, err
	}
	vm, h, err := s.inv.LoadVM(ctx, t)
	var cur *api.VMNIC
	if err == nil {
		cur, err = findNIC(vm, p.NIC)
	}
	if err != nil {
		s.releaseNICKeys(context.WithoutCancel(ctx), "", p.PortGroup, p.IPv4)
		return nil, err
	}
	n := *cur
	if p.PortGroup != "" {
		n.PortGroup, n.IPv4 = api.Ref{ID: p.PortGroup}, p.IPv4
	}
	if p.LinkDown != nil {
		n.LinkDown = *p.LinkDown
	}
	if n == *cur {
		return n.Name, nil // done before the server restarted, or nothing left to do
	}
	moved := n.PortGroup.ID != cur.PortGroup.ID
	if moved {
		if to, ok := state.Get[*api.PortGroup](s.st, n.PortGroup.ID); !ok {
			err = api.Errorf(api.ErrNotFound, "port group %s is gone", n.PortGroup.ID)
		} else {
			err = s.checkLiveMove(vm, cur, to)
		}
	}
	if err == nil {
		t.Progress(ctx, 20, s.nicUpdateWhat(vm, cur, n, h))
		var st api.AgentVMState
		if st, err = s.hosts.UpdateNIC(ctx, hosts.TargetOf(h), vm.Metadata.ID, s.inv.NICConfig(n)); err == nil {
			return n.Name, s.recordNICUpdate(ctx, t, vm, *cur, n, st)
		}
		if t.Leader.Err() != nil {
			return nil, err
		}
		err = fmt.Errorf("change %s of vm %s on host %s: %w", n.Name, vm.Metadata.Name, h.Metadata.Name, err)
	}
	if moved {
		s.releaseNICKeys(context.WithoutCancel(ctx), "", p.PortGroup, p.IPv4)
	}
	return nil, err
}

// recordNICUpdate records a NIC as the host has it now, letting go of its
// address on the port group it left.
func (s *Service) recordNICUpdate(ctx context.Context, t *tasks.Run, vm *api.VM, old, n api.VMNIC, st api.AgentVMState) error {
	txn := s.st.Store.Txn
	if n.PortGroup.ID != old.PortGroup.ID && old.IPv4 != "" {
		txn = func() *store.Txn { return s.st.Store.Txn().DeleteRaw(placement.IPKey(old.PortGroup.ID, old.IPv4)) }
	}
	if err := state.Update(ctx, s.st, txn, vm.Metadata.ID, func(v *api.VM) error {
		if x, err := findNIC(v, n.Name); err == nil {
			*x = n
		}
		return nil
	}); err != nil {
		return fmt.Errorf("record the change of %s of vm %s: %w", n.Name, vm.Metadata.Name, err)
	}
	t.Stage(api.KindVM, vm.Metadata.ID, inventory.VMStateChange(st))
	return nil
}

// nicUpdateWhat says what a NIC update does, for its progress.
func (s *Service) nicUpdateWhat(vm *api.VM, cur *api.VMNIC, n api.VMNIC, h *api.Host) string {
	var what []string
	if n.PortGroup.ID != cur.PortGroup.ID {
		to := n.PortGroup.ID
		if pg, ok := state.Get[*api.PortGroup](s.st, to); ok {
			to = pg.Metadata.Name
		}
		what = append(what, "moving "+n.Name+" to port group "+to)
	}
	if n.LinkDown != cur.LinkDown {
		what = append(what, "setting the link of "+n.Name+" "+linkWord(n.LinkDown))
	}
	where := " on host " + h.Metadata.Name
	if running(vm) {
		where = " live" + where
	}
	return fmt.Sprintf("%s%s", joinAnd(what), where)
}

func joinAnd(s []string) string {
	if len(s) == 2 {
		return s[0] + " and " + s[1]
	}
	if len(s) == 1 {
		return s[0]
	}
	return ""
}
