package maintenance

import (
	"fmt"
	"sort"
	"strings"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/scheduler"
)

// Evacuation is one VM's way off a host.
type Evacuation struct {
	VM *api.VM
	To string // host ID
}

// Plan picks a new host for every VM of host h: running VMs go where they
// fit (and the hypervisor matches), powered-off ones anywhere that
// reaches their datastores. The plan counts what it places, so VMs spread
// and never overfill a host. It fails, naming the VMs (stuck), when some
// cannot go anywhere.
func (s *Service) Plan(h *api.Host) (plan []Evacuation, stuck []string, err error) {
	cl, ok := state.Get[*api.Cluster](s.d.State, h.Spec.Cluster.ID)
	if !ok {
		return nil, nil, api.Errorf(api.ErrConflict, "host %s is in no cluster", h.Metadata.Name)
	}
	p := &planner{s: s, from: h, cl: cl, hosts: map[string]*api.Host{}}
	for _, sh := range s.d.Places.Hosts(cl.Metadata.ID) {
		if sh.ID == h.Metadata.ID {
			continue
		}
		if o, ok := state.Get[*api.Host](s.d.State, sh.ID); ok {
			p.hosts[sh.ID] = o
			p.candidates = append(p.candidates, sh)
		}
	}
	vms := s.d.Inv.VMsOn(h.Metadata.ID)
	sort.Slice(vms, func(i, j int) bool { // the biggest first: they are the hardest to fit
		return vms[i].Spec.MemoryBytes > vms[j].Spec.MemoryBytes
	})
	for _, vm := range vms {
		switch vm.Status.PowerState {
		case api.PowerSuspended, api.PowerUnknown:
			stuck = append(stuck, fmt.Sprintf("%s (%s)", vm.Metadata.Name, vm.Status.PowerState))
			continue
		}
		to, err := p.place(vm)
		if err != nil {
			stuck = append(stuck, fmt.Sprintf("%s (%v)", vm.Metadata.Name, err))
			continue
		}
		plan = append(plan, Evacuation{VM: vm, To: to})
	}
	if len(stuck) > 0 {
		return plan, stuck, api.Errorf(api.ErrUnprocessable, "cannot evacuate host %s: %d VMs have nowhere to go: %s",
			h.Metadata.Name, len(stuck), strings.Join(inventory.FirstN(stuck, 5), "; "))
	}
	return plan, nil, nil
}

// planner is one evacuation plan being made.
type planner struct {
	s          *Service
	from       *api.Host
	cl         *api.Cluster
	hosts      map[string]*api.Host // the candidates, by ID
	candidates []scheduler.Host     // counting what the plan put on them so far
}

// place picks a host for vm and counts it there, for the next VMs.
func (p *planner) place(vm *api.VM) (string, error) {
	req := scheduler.Request{CPUOvercommit: p.cl.Spec.CPUOvercommit, MemoryOvercommit: p.cl.Spec.MemoryOvercommit}
	for _, d := range vm.Spec.Disks {
		req.Datastores = append(req.Datastores, d.Datastore.ID)
	}
	if im, ok := state.Get[*api.Image](p.s.d.State, vm.Spec.Image.ID); ok {
		req.Datastores = append(req.Datastores, im.Spec.Datastore.ID)
	}
	live := vm.Status.PowerState == api.PowerOn
	if live {
		req.CPUs, req.MemoryBytes = vm.Spec.CPUs, int64(vm.Spec.MemoryBytes)
	}
	var fit []scheduler.Host
	for _, c := range p.candidates {
		if live && (p.hosts[c.ID].Status.Hypervisor != p.from.Status.Hypervisor || p.hosts[c.ID].Status.Accel != p.from.Status.Accel) {
			continue
		}
		fit = append(fit, c)
	}
	to, err := scheduler.Place(fit, req)
	if err != nil {
		return "", err
	}
	for i := range p.candidates {
		if c := &p.candidates[i]; c.ID == to.ID {
			c.AllocCPUs += vm.Spec.CPUs
			c.AllocMemory += int64(vm.Spec.MemoryBytes)
			if live {
				c.OnCPUs += vm.Spec.CPUs
				c.OnMemory += int64(vm.Spec.MemoryBytes)
			}
		}
	}
	return to.ID, nil
}
