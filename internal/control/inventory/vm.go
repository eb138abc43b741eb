package inventory

import (
	"context"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/agent"
	"github.com/vdc-project/vdc/internal/control/hosts"
	"github.com/vdc-project/vdc/internal/control/placement"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/tasks"
	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/lease"
)

func CheckReady(vm *api.VM) error {
	switch vm.Status.Phase {
	case api.PhaseCreating:
		return api.Errorf(api.ErrConflict, "vm %s is still being created", vm.Metadata.Name)
	case api.PhaseDeleting:
		return api.Errorf(api.ErrConflict, "vm %s is being deleted", vm.Metadata.Name)
	}
	return nil
}

// vmState gives the power state of a VM for checks, with the reason a
// request cannot go ahead when nobody can tell.
func (in *Inventory) VMHost(vm *api.VM) (*api.Host, error) {
	o, ok := in.St.Cache.Get(api.KindHost, vm.Spec.Host.ID)
	if !ok {
		return nil, api.Errorf(api.ErrConflict, "vm %s is on a host that is no longer in the inventory", vm.Metadata.Name)
	}
	h := o.(*api.Host)
	if h.Status.Connection != api.HostConnected {
		return h, api.Errorf(api.ErrConflict, "host %s of vm %s is disconnected", h.Metadata.Name, vm.Metadata.Name)
	}
	return h, nil
}

// RemoveVM deletes a VM and its MAC claims from the store.
func (in *Inventory) RemoveVM(ctx context.Context, vm *api.VM) error {
	txn := in.St.Store.Txn().Delete(&api.VM{Metadata: api.ObjectMeta{ID: vm.Metadata.ID, Name: vm.Metadata.Name}})
	for _, n := range vm.Spec.NICs {
		txn.DeleteRaw(placement.MACKey(n.MAC))
		if n.IPv4 != "" {
			txn.DeleteRaw(placement.IPKey(n.PortGroup.ID, n.IPv4))
		}
	}
	_, err := txn.Commit(ctx)
	return err
}

// LoadVM reads a task's VM and its host.
func (in *Inventory) LoadVM(ctx context.Context, t *tasks.Run) (*api.VM, *api.Host, error) {
	o, err := in.St.Store.Get(ctx, api.KindVM, t.Task.Target.ID)
	if err != nil {
		return nil, nil, fmt.Errorf("vm %s: %w", t.Task.Target.Name, err)
	}
	vm := o.(*api.VM)
	h, err := in.VMHost(vm)
	return vm, h, err
}

// VMConfig is what the host needs to run a VM.
func (in *Inventory) VMConfig(vm *api.VM) (hypervisor.VMConfig, error) {
	cfg := hypervisor.VMConfig{ID: vm.Metadata.ID, Name: vm.Metadata.Name, CPUs: vm.Spec.CPUs,
		MemoryBytes: int64(vm.Spec.MemoryBytes), Labels: vm.Metadata.Labels, CDROM: vm.Spec.CDROM, VNC: vm.Spec.VNC,
		MaxCPUs: vm.Spec.MaxCPUs, MaxMemoryBytes: int64(vm.Spec.MaxMemoryBytes), Lease: in.VMLease(vm)}
	for _, d := range vm.Spec.Disks {
		o, ok := in.St.Cache.Get(api.KindDatastore, d.Datastore.ID)
		if !ok {
			return cfg, api.Errorf(api.ErrConflict, "disk %s of vm %s is on datastore %s, which is gone", d.Name, vm.Metadata.Name, d.Datastore.ID)
		}
		cfg.Disks = append(cfg.Disks, hypervisor.DiskConfig{Name: d.Name, Path: filepath.Join(o.(*api.Datastore).Spec.Path, d.Path),
			SizeBytes: int64(d.SizeBytes), Bus: d.Bus, Source: d.Source, Linked: d.Linked, Own: !d.ForeignSource && in.OnDatastore(d.Source), Thick: d.Thick, Slot: d.Slot})
	}
	cfg.Seed = SeedFor(vm)
	if b := vm.Spec.Boot; b != nil {
		io, ok := in.St.Cache.Get(api.KindImage, vm.Spec.Image.ID)
		if !ok {
			return cfg, api.Errorf(api.ErrConflict, "image of vm %s is gone", vm.Metadata.Name)
		}
		dso, ok := in.St.Cache.Get(api.KindDatastore, io.(*api.Image).Spec.Datastore.ID)
		if !ok {
			return cfg, api.Errorf(api.ErrConflict, "datastore of the image of vm %s is gone", vm.Metadata.Name)
		}
		root := dso.(*api.Datastore).Spec.Path
		cfg.Boot = &hypervisor.BootConfig{Kernel: filepath.Join(root, b.Kernel), Cmdline: b.Cmdline}
		if b.Initrd != "" {
			cfg.Boot.Initrd = filepath.Join(root, b.Initrd)
		}
	}
	for _, n := range vm.Spec.NICs {
		cfg.NICs = append(cfg.NICs, in.NICConfig(n))
	}
	return cfg, nil
}

// NICConfig is what the host needs of one NIC: its port group's VLAN and
// switch (none: NAT) with it.
func (in *Inventory) NICConfig(n api.VMNIC) hypervisor.NICConfig {
	nic := hypervisor.NICConfig{Name: n.Name, MAC: n.MAC, Model: n.Model, PortGroup: n.PortGroup.ID, IPv4: n.IPv4, LinkDown: n.LinkDown, Slot: n.Slot}
	if pg, ok := state.Get[*api.PortGroup](in.St, n.PortGroup.ID); ok {
		nic.VLAN, nic.Switch = pg.Spec.VLAN, pg.Spec.Switch.ID
	}
	return nic
}

// SetPower changes a VM's power state and the fields that go with it.
func SetPower(vm *api.VM, power, msg string) {
	st := &vm.Status
	if st.PowerState != power {
		st.PowerChanged = time.Now().UTC()
		if st.PowerState != api.PowerUnknown && st.PowerState != "" {
			st.LastKnownPowerState = st.PowerState
		}
	}
	if power != api.PowerUnknown {
		st.LastKnownPowerState = ""
	}
	st.PowerState = power
	st.Message = msg
}

// VMStateChange applies a reported state to a VM unless it knows a newer
// one. Disk measurements are taken whenever they moved.
func VMStateChange(st api.AgentVMState) func(api.Object) error {
	return func(o api.Object) error {
		vm := o.(*api.VM)
		changed := false
		if len(st.Disks) > 0 && DisksMoved(vm.Status.Disks, st.Disks) {
			vm.Status.Disks = st.Disks
			changed = true
		}
		newer := st.Seq > vm.Status.StateSeq || vm.Status.PowerState == api.PowerUnknown
		if !newer || (st.Seq == vm.Status.StateSeq && vm.Status.PowerState == st.PowerState) {
			if changed {
				return nil
			}
			return state.ErrUnchanged
		}
		vm.Status.StateSeq = st.Seq
		vm.Status.Guest, vm.Status.VNC = st.Guest, st.VNC
		SetPower(vm, st.PowerState, st.Reason)
		return nil
	}
}

// DisksMoved says whether new disk measurements differ enough to record
// (a MiB), so that a busy disk does not write the VM every heartbeat.
func DisksMoved(old, cur []api.DiskStatus) bool {
	if len(old) != len(cur) {
		return true
	}
	for i := range cur {
		if old[i].Name != cur[i].Name || absDiff(int64(old[i].AllocatedBytes), int64(cur[i].AllocatedBytes)) >= 1<<20 {
			return true
		}
	}
	return false
}

func FirstN(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], fmt.Sprintf("and %d more", len(s)-n))
	}
	return s
}

// VMsOn returns the VMs registered on a host.
func (in *Inventory) VMsOn(hostID string) []*api.VM {
	ids := in.Tally.VMsOn(hostID)
	out := make([]*api.VM, 0, len(ids))
	for _, id := range ids {
		if o, ok := in.St.Cache.Get(api.KindVM, id); ok {
			out = append(out, o.(*api.VM))
		}
	}
	return out
}

// NotHotAdding refuses what must not overlap a hot-add of the VM (a
// migration's target is built with the hardware the VM has when it
// starts).
func (in *Inventory) NotHotAdding(vm *api.VM) error {
	var busy error
	in.St.Cache.Each(api.KindTask, func(o api.Object) {
		if t := o.(*api.Task); t.Target.ID == vm.Metadata.ID && t.Op == api.OpVMHotAdd && !api.TaskDone(t.State) {
			busy = api.Errorf(api.ErrConflict, "vm %s is getting vCPUs or memory hot-added (task %s)", vm.Metadata.Name, t.Metadata.ID)
		}
	})
	return busy
}

// VMLease is the lease a VM's running copy holds: on the datastore of its
// first disk, or of its image when it boots a kernel. Only VMs HA protects
// have one.
func (in *Inventory) VMLease(vm *api.VM) string {
	co, _ := in.St.Cache.Get(api.KindCluster, vm.Spec.Cluster.ID)
	cl, _ := co.(*api.Cluster)
	if !HAProtected(cl, vm) {
		return ""
	}
	dsID := ""
	if len(vm.Spec.Disks) > 0 {
		dsID = vm.Spec.Disks[0].Datastore.ID
	} else if io, ok := in.St.Cache.Get(api.KindImage, vm.Spec.Image.ID); ok {
		dsID = io.(*api.Image).Spec.Datastore.ID
	}
	o, ok := in.St.Cache.Get(api.KindDatastore, dsID)
	if !ok {
		return ""
	}
	return lease.Path(o.(*api.Datastore).Spec.Path, vm.Metadata.ID)
}

// HAProtected says whether HA restarts the VM if its host fails.
func HAProtected(cl *api.Cluster, vm *api.VM) bool {
	return cl != nil && cl.Spec.HA.On() && api.HAPriorityOf(vm) != api.HAPriorityDisabled
}

// SeedFor builds a VM's NoCloud seed: meta-data with its ID as the
// instance ID (a clone is a new instance: cloud-init runs again), the
// user's user-data as given, and the SSH keys and host name in
// vendor-data, which cloud-init merges under the user-data.
func SeedFor(vm *api.VM) *hypervisor.Seed {
	ci := vm.Spec.CloudInit
	if ci == nil {
		return nil
	}
	host := ci.Hostname
	if host == "" {
		host = vm.Metadata.Name
	}
	seed := &hypervisor.Seed{
		MetaData: fmt.Sprintf("instance-id: %s\nlocal-hostname: %s\n", vm.Metadata.ID, host),
		UserData: ci.UserData,
	}
	if seed.UserData == "" {
		seed.UserData = "#cloud-config\n{}\n"
	}
	var vd strings.Builder
	fmt.Fprintf(&vd, "#cloud-config\nhostname: %s\n", host)
	if len(ci.SSHKeys) > 0 {
		vd.WriteString("ssh_authorized_keys:\n")
		for _, k := range ci.SSHKeys {
			fmt.Fprintf(&vd, "  - %q\n", k)
		}
	}
	seed.VendorData = vd.String()
	return seed
}

// VMDir is the VM's folder on its datastores.
func VMDir(vm *api.VM) string {
	for _, d := range VMFiles(vm) {
		return path.Dir(d.Path)
	}
	return fmt.Sprintf("%s-%s", vm.Metadata.Name, vm.Metadata.ID[len(vm.Metadata.ID)-8:])
}

// FollowJob polls a host's job until it ends, reporting progress.
func (in *Inventory) FollowJob(ctx context.Context, t *tasks.Run, h *api.Host, job agent.Job, report func(agent.Job) (int, string)) (agent.Job, error) {
	for {
		j, err := in.Hosts.Job(ctx, hosts.TargetOf(h), job.ID)
		if err != nil {
			return j, err
		}
		switch j.State {
		case agent.JobSucceeded:
			return j, nil
		case agent.JobFailed:
			return j, errors.New(j.Error)
		}
		pct, msg := report(j)
		t.Progress(ctx, pct, msg)
		select {
		case <-ctx.Done():
			return j, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// NotMoving refuses storage changes while a migration task runs on the VM.
func (in *Inventory) NotMoving(vm *api.VM) error {
	var busy error
	in.St.Cache.Each(api.KindTask, func(o api.Object) {
		if t := o.(*api.Task); t.Target.ID == vm.Metadata.ID && t.Op == api.OpVMMigrate && !api.TaskDone(t.State) {
			busy = api.Errorf(api.ErrConflict, "vm %s is being migrated (task %s)", vm.Metadata.Name, t.Metadata.ID)
		}
	})
	return busy
}

// OnDatastore says whether a file is on one of the datastores: one of
// vdc's own disk files, or an image put there on purpose.
func (in *Inventory) OnDatastore(path string) bool {
	if path == "" {
		return false
	}
	on := false
	in.St.Cache.Each(api.KindDatastore, func(o api.Object) {
		root := o.(*api.Datastore).Spec.Path
		if rel, err := filepath.Rel(root, path); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
			on = true
		}
	})
	return on
}

// VMFiles lists every disk file of a VM (current and snapshots').
func VMFiles(vm *api.VM) []api.VMDisk {
	out := slices.Clone(vm.Spec.Disks)
	for _, sn := range vm.Spec.Snapshots {
		out = append(out, sn.Disks...)
	}
	return out
}

func absDiff(a, b int64) int64 {
	if a > b {
		return a - b
	}
	return b - a
}
