package transfer

import (
	"context"
	"fmt"
	"slices"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/agent"
	"github.com/vdc-project/vdc/internal/control/hosts"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/tasks"
)

// attachDisk converts a disk into a new disk of a VM that is off, and
// gives the VM's host its new definition; whatever fails leaves the VM as
// it was.
func (s *Service) attachDisk(ctx context.Context, t *tasks.Run, p importParams, plan *importPlan) (api.Ref, error) {
	vm := plan.attach
	ref := api.Ref{ID: vm.Metadata.ID, Name: vm.Metadata.Name}
	h, err := s.inv.VMHost(vm)
	if err != nil {
		return ref, err
	}
	dsName := plan.vms[0].req.Disks[0].Datastore
	if dsName == "" && len(vm.Spec.Disks) > 0 {
		dsName = vm.Spec.Disks[0].Datastore.ID
	}
	dso, err := s.inv.Pick(api.KindDatastore, dsName, func(o api.Object) bool { return o.(*api.Datastore).Spec.Shared })
	if err != nil {
		return ref, err
	}
	nd := api.VMDisk{Name: plan.disk, Datastore: api.Ref{ID: dso.GetMeta().ID}, Bus: plan.vms[0].req.Disks[0].Bus,
		Path: fmt.Sprintf("%s/%s-%s.qcow2", inventory.VMDir(vm), plan.disk, t.Task.Metadata.ID[len(t.Task.Metadata.ID)-6:])}
	t.Progress(ctx, 30, fmt.Sprintf("converting the disk on host %s", h.Metadata.Name))
	conv, err := s.hosts.StagingConvert(ctx, hosts.TargetOf(h), p.Datastore, p.Staging, agent.ConvertRequest{Disks: []agent.ConvertDisk{{
		Files: plan.vms[0].sources[0].Files, Datastore: nd.Datastore.ID, Path: nd.Path}}}, func(f float64, msg string) {
		t.Progress(ctx, 30+int(f*60), msg)
	})
	if err != nil {
		return ref, fmt.Errorf("import a disk for vm %s: %w", vm.Metadata.Name, err)
	}
	nd.SizeBytes = api.Size(conv[0].VirtualBytes)
	removeFile := func() {
		_ = s.hosts.DeleteFile(context.WithoutCancel(ctx), hosts.TargetOf(h), nd.Datastore.ID, nd.Path)
	}
	err = state.Update(ctx, s.st, nil, vm.Metadata.ID, func(v *api.VM) error {
		if v.Status.PowerState != api.PowerOff || v.Status.Phase != api.PhaseReady {
			return api.Errorf(api.ErrConflict, "vm %s changed state (%s, %s) during the import", v.Metadata.Name, v.Status.Phase, v.Status.PowerState)
		}
		if slices.ContainsFunc(inventory.VMFiles(v), func(d api.VMDisk) bool { return d.Name == nd.Name }) || len(v.Spec.Disks) >= api.MaxDisksPerVM {
			return api.Errorf(api.ErrConflict, "vm %s's disks changed during the import (it has %d, or one named %s)", v.Metadata.Name, len(v.Spec.Disks), nd.Name)
		}
		v.Spec.Disks = append(v.Spec.Disks, nd)
		return nil
	})
	if err != nil {
		removeFile()
		return ref, err
	}
	if err := s.redefine(ctx, h, vm.Metadata.ID); err != nil {
		// Take the disk back out: the VM stays as it was.
		_ = state.Update(context.WithoutCancel(ctx), s.st, nil, vm.Metadata.ID, func(v *api.VM) error {
			v.Spec.Disks = slices.DeleteFunc(v.Spec.Disks, func(d api.VMDisk) bool { return d.Name == nd.Name })
			return nil
		})
		removeFile()
		return ref, fmt.Errorf("add the disk to vm %s: %w", vm.Metadata.Name, err)
	}
	return ref, nil
}

// redefine gives host h the definition of the VM as the store has it now.
func (s *Service) redefine(ctx context.Context, h *api.Host, vmID string) error {
	vm, err := state.Read[*api.VM](ctx, s.st, vmID)
	if err != nil {
		return err
	}
	cfg, err := s.inv.VMConfig(vm)
	if err != nil {
		return err
	}
	_, err = s.hosts.Define(ctx, hosts.TargetOf(h), cfg)
	return err
}
