package vms

import (
	"context"
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/placement"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/tasks"
	"github.com/vdc-project/vdc/internal/store"
)

// A VM's NICs change with tasks: vm.nic-add, vm.nic-remove and
// vm.nic-update (nictasks.go runs them). A new NIC's name, MAC, address
// and hot-plug slot are picked when the request comes in and claimed in
// the transaction that queues its task: the MAC and the address for good
// (the keys vm create claims, released when the NIC goes or its task
// fails), the name, slot and address also as the task's claims, which
// the next request's picks skip.

type nicAddParams struct {
	NIC api.VMNIC `json:"nic"`
}

type nicRemoveParams struct {
	NIC string `json:"nic"`
}

type nicUpdateParams struct {
	NIC string `json:"nic"`
	// PortGroup is the port group the NIC moves to ("": it stays), and
	// IPv4 its address there when the port group has DHCP.
	PortGroup string `json:"portGroup,omitempty"`
	IPv4      string `json:"ipv4,omitempty"`
	LinkDown  *bool  `json:"linkDown,omitempty"`
}

// nicReady checks what a change of a VM's NICs needs: a VM that exists
// for good, is not a template, on a host that answers, not migrating.
func (s *Service) nicReady(vm *api.VM, what string) error {
	if err := inventory.CheckReady(vm); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if vm.Spec.Template {
		return api.Errorf(api.ErrConflict, "%s: vm %s is a template; clone it to change it", what, vm.Metadata.Name)
	}
	if vm.Status.PowerState == api.PowerUnknown {
		return api.Errorf(api.ErrConflict, "%s: the state of vm %s is unknown: %s", what, vm.Metadata.Name, vm.Status.Message)
	}
	if _, err := s.inv.VMHost(vm); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return s.inv.NotMoving(vm)
}

func running(vm *api.VM) bool { return vm.Status.PowerState != api.PowerOff }

func findNIC(vm *api.VM, name string) (*api.VMNIC, error) {
	for i := range vm.Spec.NICs {
		if vm.Spec.NICs[i].Name == name {
			return &vm.Spec.NICs[i], nil
		}
	}
	return nil, api.Errorf(api.ErrNotFound, "vm %s has no NIC %q", vm.Metadata.Name, name)
}

// nicPortGroup is the port group a NIC of vm may go on: in the VM's
// datacenter, and when on a switch, a switch of the VM's cluster.
func (s *Service) nicPortGroup(vm *api.VM, name string) (*api.PortGroup, error) {
	o, err := s.inv.Lookup(api.KindPortGroup, name)
	if err != nil {
		return nil, err
	}
	pg := o.(*api.PortGroup)
	cl, err := s.cluster(vm)
	if err != nil {
		return nil, err
	}
	if dc := inventory.DatacenterOf(cl); inventory.DatacenterOf(pg) != dc {
		return nil, api.Errorf(api.ErrInvalid, "port group %s is in another datacenter than vm %s", pg.Metadata.Name, vm.Metadata.Name)
	}
	if err := s.inv.PortGroupInCluster(pg, vm.Spec.Cluster.ID); err != nil {
		return nil, err
	}
	return pg, nil
}

// nextNICName is the lowest nicN that no NIC of the VM has and no
// unfinished task claimed (pending).
func nextNICName(vm *api.VM, pending map[string]*api.Task) string {
	used := map[int]bool{}
	names := slices.Collect(maps.Keys(pending))
	for _, n := range vm.Spec.NICs {
		names = append(names, n.Name)
	}
	for _, name := range names {
		if i, err := strconv.Atoi(strings.TrimPrefix(path.Base(name), "nic")); err == nil {
			used[i] = true
		}
	}
	n := 0
	for used[n] {
		n++
	}
	return fmt.Sprintf("nic%d", n)
}

// AddNIC queues the add of a NIC to a VM, hot-plugged when the VM runs.
func (s *Service) AddNIC(ctx context.Context, vm *api.VM, req api.NICAddRequest) (*api.Task, error) {
	if err := validateNIC(req); err != nil {
		return nil, fmt.Errorf("add a NIC to vm %s: %w", vm.Metadata.Name, err)
	}
	if err := s.st.Cache.Sync(ctx); err != nil {
		return nil, err
	}
	return s.inv.SubmitOnVMWith(ctx, vm, func(vm *api.VM, txn *store.Txn) (*api.Task, error) {
		n, claims, err := s.planNICAdd(vm, req)
		if err != nil {
			return nil, err
		}
		t := tasks.New(ctx, api.OpNICAdd, vm, nicAddParams{NIC: n})
		t.Claims = claims
		claimNICKeys(txn, vm.Metadata.ID, n.MAC, n.PortGroup.ID, n.IPv4)
		return t, nil
	})
}

// claimNICKeys claims, for good, a NIC's MAC (if mac is set) and its
// address on its port group (if ip is set), as vm create does.
func claimNICKeys(txn *store.Txn, vmID, mac, pgID, ip string) {
	if mac != "" {
		txn.Claim(placement.MACKey(mac), vmID, api.Errorf(api.ErrConflict, "MAC address %s is already in use", mac))
	}
	if ip != "" {
		txn.Claim(placement.IPKey(pgID, ip), vmID, api.Errorf(api.ErrConflict, "address %s is already in use on the port group", ip))
	}
}

func (s *Service) planNICAdd(vm *api.VM, req api.NICAddRequest) (api.VMNIC, []string, error) {
	if err := s.nicReady(vm, "add a NIC"); err != nil {
		return api.VMNIC{}, nil, err
	}
	id := vm.Metadata.ID
	pending := s.inv.PendingClaims(inventory.NICClaim(id, ""))
	if n := len(vm.Spec.NICs) + len(pending); n >= api.MaxNICsPerVM {
		return api.VMNIC{}, nil, api.Errorf(api.ErrConflict, "vm %s has %d NICs (some being added), the most it may have", vm.Metadata.Name, n)
	}
	pg, err := s.nicPortGroup(vm, req.PortGroup)
	if err != nil {
		return api.VMNIC{}, nil, fmt.Errorf("add a NIC to vm %s: %w", vm.Metadata.Name, err)
	}
	pendingMACs := map[string]bool{}
	for c := range s.inv.PendingClaims(inventory.MACClaim("")) {
		pendingMACs[path.Base(c)] = true
	}
	mac := strings.ToLower(req.MAC)
	if mac == "" {
		mac = s.inv.NewMAC(pendingMACs)
	} else if pendingMACs[mac] || s.inv.Tally.MACInUse(mac) {
		return api.VMNIC{}, nil, api.Errorf(api.ErrConflict, "add a NIC to vm %s: MAC address %s is already in use", vm.Metadata.Name, mac)
	}
	ip, err := s.inv.NICAddress(pg, nil)
	if err != nil {
		return api.VMNIC{}, nil, fmt.Errorf("add a NIC to vm %s: %w", vm.Metadata.Name, err)
	}
	n := api.VMNIC{Name: nextNICName(vm, pending), PortGroup: api.Ref{ID: pg.Metadata.ID}, MAC: mac, Model: req.Model, IPv4: ip}
	if n.Model == "" {
		n.Model = api.NICVirtio
	}
	claims := []string{inventory.NICClaim(id, n.Name), inventory.MACClaim(mac)}
	if ip != "" {
		claims = append(claims, inventory.IPClaim(pg.Metadata.ID, ip))
	}
	if running(vm) {
		if n.Slot = s.inv.FreeSlot(vm); n.Slot == "" {
			return api.VMNIC{}, nil, api.Errorf(api.ErrConflict, "vm %s has no free hot-plug slot (%d disks and NICs were added while it ran, or are being added); stop it to add more",
				vm.Metadata.Name, inventory.HotplugSlots)
		}
		claims = append(claims, inventory.SlotClaim(id, n.Slot))
	}
	return n, claims, nil
}

// RemoveNIC queues the removal of a VM's NIC, unplugged when it runs.
func (s *Service) RemoveNIC(ctx context.Context, vm *api.VM, nic string) (*api.Task, error) {
	if err := s.nicReady(vm, "remove a NIC"); err != nil {
		return nil, err
	}
	if _, err := findNIC(vm, nic); err != nil {
		return nil, err
	}
	txn := s.st.Store.Txn().Unchanged(vm, api.Errorf(api.ErrConflict, "vm %s changed; try again", vm.Metadata.Name))
	return s.tasks.Submit(ctx, txn, tasks.New(ctx, api.OpNICRemove, vm, nicRemoveParams{NIC: nic}))
}

// UpdateNIC queues a change of a VM's NIC: another port group, its link
// state.
func (s *Service) UpdateNIC(ctx context.Context, vm *api.VM, nic string, req api.NICUpdateRequest) (*api.Task, error) {
	if req.PortGroup == nil && req.LinkDown == nil {
		return nil, api.Errorf(api.ErrInvalid, "change %s of vm %s: nothing to change; give a port group or a link state", nic, vm.Metadata.Name)
	}
	if req.PortGroup != nil && *req.PortGroup == "" {
		return nil, api.Errorf(api.ErrInvalid, "change %s of vm %s: empty port group", nic, vm.Metadata.Name)
	}
	if err := s.st.Cache.Sync(ctx); err != nil {
		return nil, err
	}
	return s.inv.SubmitOnVMWith(ctx, vm, func(vm *api.VM, txn *store.Txn) (*api.Task, error) {
		p, err := s.planNICUpdate(vm, nic, req)
		if err != nil {
			return nil, err
		}
		t := tasks.New(ctx, api.OpNICUpdate, vm, p)
		if p.IPv4 != "" {
			t.Claims = []string{inventory.IPClaim(p.PortGroup, p.IPv4)}
			claimNICKeys(txn, vm.Metadata.ID, "", p.PortGroup, p.IPv4)
		}
		return t, nil
	})
}

func (s *Service) planNICUpdate(vm *api.VM, nic string, req api.NICUpdateRequest) (nicUpdateParams, error) {
	if err := s.nicReady(vm, "change a NIC"); err != nil {
		return nicUpdateParams{}, err
	}
	cur, err := findNIC(vm, nic)
	if err != nil {
		return nicUpdateParams{}, err
	}
	p := nicUpdateParams{NIC: cur.Name}
	what := []string{}
	if req.PortGroup != nil {
		to, err := s.nicPortGroup(vm, *req.PortGroup)
		if err != nil {
			return p, fmt.Errorf("move %s of vm %s: %w", nic, vm.Metadata.Name, err)
		}
		if to.Metadata.ID != cur.PortGroup.ID {
			if err := s.checkLiveMove(vm, cur, to); err != nil {
				return p, err
			}
			if p.IPv4, err = s.inv.NICAddress(to, nil); err != nil {
				return p, fmt.Errorf("move %s of vm %s: %w", nic, vm.Metadata.Name, err)
			}
			p.PortGroup = to.Metadata.ID
		} else {
			what = append(what, "on port group "+to.Metadata.Name)
		}
	}
	if req.LinkDown != nil {
		if *req.LinkDown != cur.LinkDown {
			p.LinkDown = req.LinkDown
		} else {
			what = append(what, "with its link "+linkWord(cur.LinkDown))
		}
	}
	if p.PortGroup == "" && p.LinkDown == nil {
		return p, api.Errorf(api.ErrConflict, "%s of vm %s is already %s", nic, vm.Metadata.Name, strings.Join(what, " and "))
	}
	return p, nil
}

func linkWord(down bool) string {
	if down {
		return "down"
	}
	return "up"
}

// checkLiveMove refuses the move of a running VM's NIC to port group to
// that needs another backend in QEMU: between a NAT port group (QEMU's
// user-mode network) and a switch's (a tap), or between switches of
// different backends (the tap is each backend's own).
func (s *Service) checkLiveMove(vm *api.VM, cur *api.VMNIC, to *api.PortGroup) error {
	if !running(vm) {
		return nil
	}
	from, _ := state.Get[*api.PortGroup](s.st, cur.PortGroup.ID)
	fromName, fromSw := cur.PortGroup.ID, ""
	if from != nil {
		fromName, fromSw = from.Metadata.Name, from.Spec.Switch.ID
	}
	toSw := to.Spec.Switch.ID
	stop := fmt.Sprintf("vm %s is %s: %s", vm.Metadata.Name, vm.Status.PowerState, cur.Name)
	switch {
	case fromSw == "" && toSw != "":
		return api.Errorf(api.ErrConflict, "%s moves from NAT port group %s to port group %s of a switch only while the VM is off (QEMU would need a tap instead of its user-mode network); stop it first", stop, fromName, to.Metadata.Name)
	case fromSw != "" && toSw == "":
		return api.Errorf(api.ErrConflict, "%s moves from port group %s of a switch to NAT port group %s only while the VM is off (QEMU would need its user-mode network instead of a tap); stop it first", stop, fromName, to.Metadata.Name)
	case fromSw != "" && fromSw != toSw:
		a, _ := state.Get[*api.Switch](s.st, fromSw)
		b, _ := state.Get[*api.Switch](s.st, toSw)
		if a != nil && b != nil && a.Spec.Backend != b.Spec.Backend {
			return api.Errorf(api.ErrConflict, "%s moves from switch %s (%s) to switch %s (%s) only while the VM is off (its tap belongs to one backend); stop it first",
				stop, a.Metadata.Name, a.Spec.Backend, b.Metadata.Name, b.Spec.Backend)
		}
	}
	return nil
}
