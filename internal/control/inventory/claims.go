package inventory

import (
	"context"
	"errors"
	"strings"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/retry"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/store"
)

// Claims. Some names are picked when a request comes in but recorded only
// when its task ends: a snapshot's, a new disk's (and its hot-plug slot),
// the VMs an import makes. The request claims each in the transaction
// that queues its task (a key in the store naming the task, listed in
// Task.Claims), and that transaction also checks that the VM it decided
// from is unchanged; the transaction that records the task's outcome lets
// the claims go. So two requests at once cannot both pick one name, and a
// name a task recorded just before is seen.

// ErrRaced says a request lost every try to racing writes.
var ErrRaced = api.Errorf(api.ErrConflict, "other changes kept getting in first; try again")

// SubmitOnVM queues the task that build makes from a VM, with the claims
// the task lists, provided the VM is unchanged since it was read. When
// another write got in first (a host's status report, a racing request's
// claim), build runs again on the inventory as it is now: it sees what the
// racing request claimed, and refuses or picks another name.
func (in *Inventory) SubmitOnVM(ctx context.Context, vm *api.VM, build func(vm *api.VM) (*api.Task, error)) (*api.Task, error) {
	return in.SubmitOnVMWith(ctx, vm, func(vm *api.VM, _ *store.Txn) (*api.Task, error) { return build(vm) })
}

// SubmitOnVMWith is SubmitOnVM for a build that adds writes of its own
// to the transaction that queues the task (the claims a new NIC's MAC
// and address hold for good).
func (in *Inventory) SubmitOnVMWith(ctx context.Context, vm *api.VM, build func(vm *api.VM, txn *store.Txn) (*api.Task, error)) (*api.Task, error) {
	var out *api.Task
	raced := false
	err := retry.Conflicts(ctx, 20, func() error {
		if raced {
			raced = false // another write got in first: build again on what is there now
			if err := in.St.Cache.Sync(ctx); err != nil {
				return retry.Stop(err)
			}
			cur, ok := state.Get[*api.VM](in.St, vm.Metadata.ID)
			if !ok {
				return retry.Stop(api.Errorf(api.ErrNotFound, "vm %s was deleted", vm.Metadata.Name))
			}
			vm = cur
		}
		txn := in.St.Store.Txn()
		t, err := build(vm, txn)
		if err != nil {
			return retry.Stop(err)
		}
		changed := api.Errorf(api.ErrConflict, "vm %s changed", vm.Metadata.Name)
		txn.Unchanged(vm, changed)
		for _, c := range t.Claims {
			txn.Claim(store.ClaimKey(c), t.Metadata.ID, ErrRaced)
		}
		out, err = in.Tasks.Submit(ctx, txn, t)
		raced = errors.Is(err, api.ErrConflict)
		return err
	})
	if raced {
		return nil, ErrRaced
	}
	return out, err
}

// PendingClaims lists the claims under prefix that unfinished tasks hold,
// with the task holding each, as the cache has them.
func (in *Inventory) PendingClaims(prefix string) map[string]*api.Task {
	out := map[string]*api.Task{}
	in.St.Cache.Each(api.KindTask, func(o api.Object) {
		t := o.(*api.Task)
		if api.TaskDone(t.State) {
			return
		}
		for _, c := range t.Claims {
			if strings.HasPrefix(c, prefix) {
				out[c] = t
			}
		}
	})
	return out
}

// VMClaim names a claim on one of a VM's names: vms/ID/snapshots/NAME.
func VMClaim(vmID, what, name string) string { return "vms/" + vmID + "/" + what + "/" + name }

// VMNameFree refuses a VM name that is taken, or claimed by an unfinished
// task other than self (an import).
func (in *Inventory) VMNameFree(name string, self *api.Task) error {
	if _, taken := in.St.Cache.Lookup(api.KindVM, name); taken {
		return api.Errorf(api.ErrConflict, "a vm named %q already exists", name)
	}
	c := store.NameClaim(api.KindVM, name)
	if t := in.PendingClaims(c)[c]; t != nil && (self == nil || t.Metadata.ID != self.Metadata.ID) {
		return api.Errorf(api.ErrConflict, "a vm named %q is being made by task %s (%s)", name, t.Metadata.ID, t.Op)
	}
	return nil
}
