package migration

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/hosts"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/tasks"
	"github.com/vdc-project/vdc/internal/hypervisor"
)

// migration is one run of a vm.migrate task: the VM, where it is and where
// it goes, what it will be there, and the task it reports to.
type migration struct {
	s        *Service
	t        *tasks.Run
	p        params
	vm       *api.VM // as the store has it now
	after    *api.VM // as it will be once moved: new host and datastores
	src, dst *api.Host
	cfg      hypervisor.VMConfig // what the target runs (after's)
	moved    []string            // the disks put on another datastore
	oldPaths map[string]string   // where the VM's disks are now, by name
	res      *api.MigrateResult
}

// run is the vm.migrate task.
func (s *Service) run(ctx context.Context, t *tasks.Run) (any, error) {
	m, done, err := s.load(ctx, t)
	if err != nil || done {
		return m.result(), err
	}
	if !t.Resumed {
		if err := s.check(m.vm, m.src, m.dst, m.p, m.moved); err != nil {
			return nil, err
		}
	}
	if err := m.prepare(); err != nil {
		return nil, err
	}
	if err := m.move(ctx); err != nil {
		return nil, err
	}
	// A mirror to another host counts the zeros of a thin disk as work
	// done (it writes them as such); the data it copied is what the disks
	// held.
	if held := heldBytes(m.vm, m.moved); held > 0 && m.res.DiskBytes > held {
		m.res.DiskBytes = held
	}
	return m.res, nil
}

// result is what the task returns: nothing when it failed to load.
func (m *migration) result() any {
	if m == nil {
		return nil
	}
	return m.res
}

// load reads a task's migration: done says it finished before a restart.
func (s *Service) load(ctx context.Context, t *tasks.Run) (*migration, bool, error) {
	m := &migration{s: s, t: t}
	if err := t.Params(&m.p); err != nil {
		return nil, false, err
	}
	vm, src, err := s.inv.LoadVM(ctx, t)
	if err != nil {
		return nil, false, err
	}
	dst, ok := state.Get[*api.Host](s.st, m.p.Host)
	if !ok {
		return nil, false, api.Errorf(api.ErrConflict, "the target host is gone")
	}
	m.vm, m.src, m.dst = vm, src, dst
	m.res = &api.MigrateResult{From: api.Ref{ID: src.Metadata.ID, Name: src.Metadata.Name}, To: api.Ref{ID: dst.Metadata.ID, Name: dst.Metadata.Name}}
	m.moved = movedDisks(vm, m.p)
	if t.Resumed && vm.Spec.Host.ID == m.p.Host && len(m.moved) == 0 {
		return m, true, nil // finished before the restart
	}
	if len(m.moved) > 0 {
		m.res.Datastore, m.res.Disks = api.Ref{ID: m.p.Datastore}, m.moved
		if ds, ok := state.Get[*api.Datastore](s.st, m.p.Datastore); ok {
			m.res.Datastore.Name = ds.Metadata.Name
		}
	}
	return m, false, nil
}

// prepare works out the VM as it will be once moved, and its config.
func (m *migration) prepare() error {
	m.after = afterMove(m.vm, m.p, m.moved)
	cfg, err := m.s.inv.VMConfig(m.after)
	if err != nil {
		return err
	}
	m.cfg = cfg
	if m.oldPaths, err = m.s.diskPaths(m.vm); err != nil {
		return err
	}
	m.res.Live = m.live()
	return nil
}

// live says whether the VM moves while it runs.
func (m *migration) live() bool { return m.vm.Status.PowerState == api.PowerOn }

// sameHost says whether only the VM's disks move.
func (m *migration) sameHost() bool { return m.src.Metadata.ID == m.dst.Metadata.ID }

// move moves the VM the way its state asks for.
func (m *migration) move(ctx context.Context) error {
	switch {
	case !m.live():
		return m.cold(ctx)
	case m.sameHost():
		return m.moveDisksLive(ctx)
	case m.t.Resumed:
		return m.resume(ctx)
	}
	return m.migrateLive(ctx)
}

// afterMove is the VM as it will be once moved: new host and datastores.
func afterMove(vm *api.VM, p params, moved []string) *api.VM {
	c := *vm
	c.Spec.Host = api.Ref{ID: p.Host}
	c.Spec.Disks = slices.Clone(vm.Spec.Disks)
	for i := range c.Spec.Disks {
		if slices.Contains(moved, c.Spec.Disks[i].Name) {
			// A moved disk is a full copy: no longer linked to its base.
			c.Spec.Disks[i].Datastore = api.Ref{ID: p.Datastore}
			c.Spec.Disks[i].Source, c.Spec.Disks[i].Linked = "", false
		}
	}
	return &c
}

// diskPaths maps disk names to their absolute paths for a VM.
func (s *Service) diskPaths(vm *api.VM) (map[string]string, error) {
	out := map[string]string{}
	for _, d := range vm.Spec.Disks {
		ds, ok := state.Get[*api.Datastore](s.st, d.Datastore.ID)
		if !ok {
			return nil, api.Errorf(api.ErrConflict, "datastore of disk %s is gone", d.Name)
		}
		out[d.Name] = filepath.Join(ds.Spec.Path, d.Path)
	}
	return out, nil
}

// switchTo records where the VM now is: host, disks and state.
func (m *migration) switchTo(ctx context.Context, st *api.AgentVMState) error {
	return state.Update(ctx, m.s.st, nil, m.vm.Metadata.ID, func(v *api.VM) error {
		v.Spec.Host = m.after.Spec.Host
		v.Spec.Disks = m.after.Spec.Disks
		if st != nil {
			v.Status.StateSeq = st.Seq
			inventory.SetPower(v, st.PowerState, st.Reason)
			v.Status.Guest, v.Status.VNC = st.Guest, st.VNC
		}
		return nil
	})
}

// cold moves a powered-off VM: the target defines it (copying moved
// disks from where the target reaches them), the source forgets it.
func (m *migration) cold(ctx context.Context) error {
	cfg, vm, src, dst, oldPaths := m.cfg, m.vm, m.src, m.dst, m.oldPaths
	for i, d := range cfg.Disks {
		if slices.Contains(m.moved, d.Name) {
			cfg.Disks[i].Source, cfg.Disks[i].Linked, cfg.Disks[i].Own = oldPaths[d.Name], false, true
		}
	}
	m.t.Progress(ctx, 20, "registering the VM on host "+dst.Metadata.Name)
	st, err := m.s.hosts.Define(ctx, hosts.TargetOf(dst), cfg)
	if err != nil {
		return fmt.Errorf("define vm %s on host %s: %w", vm.Metadata.Name, dst.Metadata.Name, err)
	}
	if !m.sameHost() {
		if err := m.s.hosts.Release(ctx, hosts.TargetOf(src), vm.Metadata.ID, len(m.moved) > 0); err != nil {
			// Undo: the VM stays where it was.
			_ = m.s.hosts.Undefine(ctx, hosts.TargetOf(dst), vm.Metadata.ID, false)
			return fmt.Errorf("release vm %s on host %s: %w", vm.Metadata.Name, src.Metadata.Name, err)
		}
	} else {
		for _, d := range m.moved {
			m.removeOldDisk(ctx, d, oldPaths[d])
		}
	}
	return m.switchTo(ctx, &st)
}

// removeOldDisk deletes a disk file a same-host move left behind.
func (m *migration) removeOldDisk(ctx context.Context, disk, path string) {
	for _, d := range m.vm.Spec.Disks {
		if d.Name == disk {
			if err := m.s.hosts.DeleteFile(ctx, hosts.TargetOf(m.src), d.Datastore.ID, d.Path); err != nil {
				m.s.log.Warn("cannot remove a moved disk's old file", "vm", m.vm.Metadata.Name, "path", path, "err", err)
			}
		}
	}
}

// moveDisksLive moves a running VM's disks on its own host.
func (m *migration) moveDisksLive(ctx context.Context) error {
	var moves []hypervisor.DiskMove
	for _, d := range m.cfg.Disks {
		if slices.Contains(m.moved, d.Name) {
			moves = append(moves, hypervisor.DiskMove{Name: d.Name, Path: d.Path})
		}
	}
	name := m.vm.Metadata.Name
	start := time.Now()
	if !m.t.Resumed {
		if err := m.s.hosts.MoveDisks(ctx, hosts.TargetOf(m.src), m.vm.Metadata.ID, moves); err != nil {
			return fmt.Errorf("move the disks of vm %s: %w", name, err)
		}
	}
	st, err := m.follow(ctx, false)
	if err != nil {
		return fmt.Errorf("move the disks of vm %s: %w; it uses its old disks as before", name, err)
	}
	m.res.TotalMs, m.res.DiskBytes = time.Since(start).Milliseconds(), api.Size(st.DiskDone)
	// The host keeps the new paths for the VM's next start.
	if _, err := m.s.hosts.Define(ctx, hosts.TargetOf(m.src), m.cfg); err != nil {
		return fmt.Errorf("record the new disk paths of vm %s: %w", name, err)
	}
	return m.switchTo(ctx, nil)
}
