package ha

import (
	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/scheduler"
)

// haVM is a VM as the HA planner sees it.
func (s *Service) haVM(vm *api.VM) scheduler.HAVM {
	v := scheduler.HAVM{ID: vm.Metadata.ID, Name: vm.Metadata.Name, Host: vm.Spec.Host.ID, CPUs: vm.Spec.CPUs,
		MemoryBytes: int64(vm.Spec.MemoryBytes), Priority: api.HAPriorityOf(vm)}
	for _, d := range vm.Spec.Disks {
		v.Datastores = append(v.Datastores, d.Datastore.ID)
	}
	if im, ok := state.Get[*api.Image](s.d.State, vm.Spec.Image.ID); ok {
		v.Datastores = append(v.Datastores, im.Spec.Datastore.ID)
	}
	return v
}

// CheckHAAdmission is HA admission control for a power-on of vm on host
// h: it refuses one that would leave cluster cl unable to restart its VMs
// after the host failures it must tolerate.
func (s *Service) CheckHAAdmission(vm *api.VM, cl *api.Cluster, h *api.Host) error {
	if ha := cl.Spec.HA; !ha.On() || ha.AdmissionControl.Policy == api.AdmissionOff || ha.AdmissionControl.Policy == "" {
		return nil // nothing to check: no need to list the cluster's VMs
	}
	var others []scheduler.HAVM
	// Listed first: VMsOn reads the cache, which Each holds locked.
	inCluster := state.List(s.d.State, func(sh *api.Host) bool { return sh.Spec.Cluster.ID == cl.Metadata.ID })
	for _, sh := range inCluster {
		for _, other := range s.d.Inv.VMsOn(sh.Metadata.ID) {
			if other.Metadata.ID != vm.Metadata.ID && state.HoldsResources(other) {
				others = append(others, s.haVM(other))
			}
		}
	}
	cand := s.haVM(vm)
	cand.Host = h.Metadata.ID
	return s.d.Places.AdmitHA(vm, cl, cand, others)
}
