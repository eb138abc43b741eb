package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/agent"
	"github.com/vdc-project/vdc/internal/control/hosts"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/tasks"
	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/pki"
)

// vmMigrateParams are kept in the vm.migrate task.
type vmMigrateParams struct {
	Host      string             `json:"host"`                // target host ID
	Datastore string             `json:"datastore,omitempty"` // target datastore ID, "" to keep
	Disks     []string           `json:"disks,omitempty"`     // disks to move (all when empty)
	Options   api.MigrateRequest `json:"options"`
}

func validateMigrateOptions(o api.MigrateRequest) error {
	switch {
	case o.Compress != "" && o.Compress != "zstd" && o.Compress != "xbzrle":
		return api.Errorf(api.ErrInvalid, "compress must be zstd or xbzrle, got %q", o.Compress)
	case o.Multifd < 0 || o.Multifd > 16:
		return api.Errorf(api.ErrInvalid, "multifd must be between 0 and 16 connections, got %d", o.Multifd)
	case o.MaxDowntimeMs < 0 || o.MaxDowntimeMs > 60000:
		return api.Errorf(api.ErrInvalid, "maxDowntimeMs must be between 0 (default 300) and 60000, got %d", o.MaxDowntimeMs)
	case o.MaxBandwidth < 0:
		return api.Errorf(api.ErrInvalid, "maxBandwidth must not be negative")
	case o.MaxBandwidth > 0 && o.MaxBandwidth < 1<<20:
		return api.Errorf(api.ErrInvalid, "maxBandwidth %s/s is too low to move a VM; give at least 1 MiB/s", o.MaxBandwidth)
	}
	return nil
}

// POST /api/v1/vms/{name}/migrate
func (s *Server) migrateVM(w http.ResponseWriter, r *http.Request) {
	var req api.MigrateRequest
	if !decode(w, r, &req) {
		return
	}
	if err := validateMigrateOptions(req); err != nil {
		fail(w, err)
		return
	}
	if req.Host == "" && req.Datastore == "" {
		fail(w, api.Errorf(api.ErrInvalid, "say where to: a host, a datastore, or both"))
		return
	}
	vm, src, err := s.pathVM(r)
	if err == nil {
		err = inventory.CheckReady(vm)
	}
	if err != nil {
		fail(w, fmt.Errorf("migrate: %w", err))
		return
	}
	p, err := s.planMigration(vm, src, req)
	if err != nil {
		fail(w, fmt.Errorf("migrate vm %s: %w", vm.Metadata.Name, err))
		return
	}
	t, err := s.submitter.Submit(r.Context(), s.store.Txn(), tasks.New(r.Context(), api.OpVMMigrate, vm, p))
	if err != nil {
		fail(w, err)
		return
	}
	replyTask(w, t)
}

// planMigration resolves a request and checks that the move can work, so
// that a refused move changes nothing.
func (s *Server) planMigration(vm *api.VM, src *api.Host, req api.MigrateRequest) (vmMigrateParams, error) {
	p := vmMigrateParams{Host: src.Metadata.ID, Disks: req.Disks, Options: req}
	dst := src
	if req.Host != "" {
		o, err := s.inv.Lookup(api.KindHost, req.Host)
		if err != nil {
			return p, err
		}
		dst = o.(*api.Host)
		p.Host = dst.Metadata.ID
	}
	var ds *api.Datastore
	if req.Datastore != "" {
		o, err := s.inv.Lookup(api.KindDatastore, req.Datastore)
		if err != nil {
			return p, err
		}
		ds = o.(*api.Datastore)
		p.Datastore = ds.Metadata.ID
	}
	for _, d := range req.Disks {
		if !slices.ContainsFunc(vm.Spec.Disks, func(x api.VMDisk) bool { return x.Name == d }) {
			return p, api.Errorf(api.ErrInvalid, "vm %s has no disk %q", vm.Metadata.Name, d)
		}
	}
	if len(req.Disks) > 0 && ds == nil {
		return p, api.Errorf(api.ErrInvalid, "choosing disks needs a datastore to move them to")
	}
	moved := s.movedDisks(vm, p)
	if len(moved) > 0 && len(vm.Spec.Snapshots) > 0 {
		return p, api.Errorf(api.ErrConflict, "vm %s has snapshots: moving its disks would flatten them; delete the snapshots first", vm.Metadata.Name)
	}
	if len(moved) > 0 && vm.Spec.Template {
		return p, api.Errorf(api.ErrConflict, "vm %s is a template: clone it to another datastore instead", vm.Metadata.Name)
	}
	if dst.Metadata.ID == src.Metadata.ID && len(moved) == 0 {
		return p, api.Errorf(api.ErrConflict, "vm %s is already there", vm.Metadata.Name)
	}
	return p, s.checkMigration(vm, src, dst, p, moved)
}

// movedDisks lists the disks a migration puts on another datastore.
func (s *Server) movedDisks(vm *api.VM, p vmMigrateParams) []string {
	if p.Datastore == "" {
		return nil
	}
	var out []string
	for _, d := range vm.Spec.Disks {
		if d.Datastore.ID != p.Datastore && (len(p.Disks) == 0 || slices.Contains(p.Disks, d.Name)) {
			out = append(out, d.Name)
		}
	}
	return out
}

// checkMigration says why a VM cannot move to a host, before anything moves.
func (s *Server) checkMigration(vm *api.VM, src, dst *api.Host, p vmMigrateParams, moved []string) error {
	live := vm.Status.PowerState == api.PowerOn
	if vm.Status.PowerState == api.PowerSuspended {
		return api.Errorf(api.ErrConflict, "vm %s is suspended: resume it (to move it live) or power it off first", vm.Metadata.Name)
	}
	if vm.Status.PowerState != api.PowerOn && vm.Status.PowerState != api.PowerOff {
		return api.Errorf(api.ErrConflict, "vm %s is %s", vm.Metadata.Name, vm.Status.PowerState)
	}
	if dst.Status.Connection != api.HostConnected {
		return api.Errorf(api.ErrConflict, "host %s is disconnected", dst.Metadata.Name)
	}
	if err := s.inv.NotHotAdding(vm); err != nil {
		return err
	}
	if dst.Spec.Maintenance && dst.Metadata.ID != src.Metadata.ID {
		return api.Errorf(api.ErrConflict, "host %s is in maintenance", dst.Metadata.Name)
	}
	vco, ok := s.cache.Get(api.KindCluster, vm.Spec.Cluster.ID)
	dco, ok2 := s.cache.Get(api.KindCluster, dst.Spec.Cluster.ID)
	if !ok || !ok2 || inventory.DatacenterOf(vco) != inventory.DatacenterOf(dco) {
		return api.Errorf(api.ErrConflict, "host %s is in another datacenter: the VM's port groups and datastores are not there", dst.Metadata.Name)
	}
	if dst.Status.Driver != src.Status.Driver {
		return api.Errorf(api.ErrConflict, "host %s runs the %s driver, the VM's host %s", dst.Metadata.Name, dst.Status.Driver, src.Status.Driver)
	}
	if live && dst.Metadata.ID != src.Metadata.ID {
		if dst.Status.Hypervisor != src.Status.Hypervisor || dst.Status.Accel != src.Status.Accel {
			return api.Errorf(api.ErrConflict, "host %s runs %s (%s), the VM's host %s (%s): a running VM moves only between the same",
				dst.Metadata.Name, dst.Status.Hypervisor, dst.Status.Accel, src.Status.Hypervisor, src.Status.Accel)
		}
		if _, err := s.places.Admit(vm, dco.(*api.Cluster), dst, false); err != nil {
			return err
		}
	}
	reaches := func(h *api.Host, dsID string) bool {
		return slices.ContainsFunc(h.Status.Datastores, func(r api.Ref) bool { return r.ID == dsID })
	}
	dsName := func(id string) string {
		if o, ok := s.cache.Get(api.KindDatastore, id); ok {
			return o.GetMeta().Name
		}
		return id
	}
	if p.Datastore != "" {
		if o, ok := s.cache.Get(api.KindDatastore, p.Datastore); !ok || inventory.DatacenterOf(o) != inventory.DatacenterOf(vco) {
			return api.Errorf(api.ErrConflict, "datastore %s is not in the VM's datacenter", dsName(p.Datastore))
		}
		if !reaches(dst, p.Datastore) {
			return api.Errorf(api.ErrConflict, "host %s does not reach datastore %s", dst.Metadata.Name, dsName(p.Datastore))
		}
		if err := s.checkRoomFor(vm, p.Datastore, moved); err != nil {
			return err
		}
	}
	for _, d := range vm.Spec.Disks {
		if slices.Contains(moved, d.Name) {
			if !live && !reaches(dst, d.Datastore.ID) {
				return api.Errorf(api.ErrConflict, "a powered-off VM's disk is copied by the target host, but host %s does not reach datastore %s of %s: start the VM to move it live",
					dst.Metadata.Name, dsName(d.Datastore.ID), d.Name)
			}
			continue
		}
		if !reaches(dst, d.Datastore.ID) {
			return api.Errorf(api.ErrConflict, "host %s does not reach datastore %s of disk %s: give a datastore to copy it to", dst.Metadata.Name, dsName(d.Datastore.ID), d.Name)
		}
	}
	if vm.Spec.Boot != nil {
		if io, ok := s.cache.Get(api.KindImage, vm.Spec.Image.ID); ok && !reaches(dst, io.(*api.Image).Spec.Datastore.ID) {
			return api.Errorf(api.ErrConflict, "host %s does not reach datastore %s of image %s the VM boots from", dst.Metadata.Name,
				dsName(io.(*api.Image).Spec.Datastore.ID), io.GetMeta().Name)
		}
	}
	return nil
}

// checkRoomFor refuses to copy disks to a datastore without the free
// space their data takes now (a thin disk may still grow on the way).
func (s *Server) checkRoomFor(vm *api.VM, dsID string, moved []string) error {
	o, ok := s.cache.Get(api.KindDatastore, dsID)
	if !ok {
		return nil
	}
	ds := o.(*api.Datastore)
	if ds.Status.CapacityBytes == 0 {
		return nil // not measured yet
	}
	var need api.Size
	for _, d := range vm.Status.Disks {
		if slices.Contains(moved, d.Name) {
			need += d.AllocatedBytes
		}
	}
	if need > ds.Status.FreeBytes {
		return api.Errorf(api.ErrUnprocessable, "datastore %s has %s free; the disks of vm %s to copy there hold %s",
			ds.Metadata.Name, ds.Status.FreeBytes, vm.Metadata.Name, need)
	}
	return nil
}

// afterMove is the VM as it will be once moved: new host and datastores.
func (s *Server) afterMove(vm *api.VM, p vmMigrateParams) *api.VM {
	moved := s.movedDisks(vm, p)
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
func (s *Server) diskPaths(vm *api.VM) (map[string]string, error) {
	out := map[string]string{}
	for _, d := range vm.Spec.Disks {
		o, ok := s.cache.Get(api.KindDatastore, d.Datastore.ID)
		if !ok {
			return nil, api.Errorf(api.ErrConflict, "datastore of disk %s is gone", d.Name)
		}
		out[d.Name] = filepath.Join(o.(*api.Datastore).Spec.Path, d.Path)
	}
	return out, nil
}

func (s *Server) runVMMigrate(ctx context.Context, t *tasks.Run) (any, error) {
	var p vmMigrateParams
	if err := t.Params(&p); err != nil {
		return nil, err
	}
	vm, src, err := s.inv.LoadVM(ctx, t)
	if err != nil {
		return nil, err
	}
	o, ok := s.cache.Get(api.KindHost, p.Host)
	if !ok {
		return nil, api.Errorf(api.ErrConflict, "the target host is gone")
	}
	dst := o.(*api.Host)
	res := &api.MigrateResult{From: api.Ref{ID: src.Metadata.ID, Name: src.Metadata.Name}, To: api.Ref{ID: dst.Metadata.ID, Name: dst.Metadata.Name}}
	if t.Resumed && vm.Spec.Host.ID == p.Host && len(s.movedDisks(vm, p)) == 0 {
		return res, nil // finished before the restart
	}
	moved := s.movedDisks(vm, p)
	if len(moved) > 0 {
		res.Datastore, res.Disks = api.Ref{ID: p.Datastore}, moved
		if o, ok := s.cache.Get(api.KindDatastore, p.Datastore); ok {
			res.Datastore.Name = o.GetMeta().Name
		}
	}
	if !t.Resumed {
		if err := s.checkMigration(vm, src, dst, p, moved); err != nil {
			return nil, err
		}
	}
	after := s.afterMove(vm, p)
	cfg, err := s.inv.VMConfig(after)
	if err != nil {
		return nil, err
	}
	oldPaths, err := s.diskPaths(vm)
	if err != nil {
		return nil, err
	}
	live := vm.Status.PowerState == api.PowerOn
	res.Live = live
	switch {
	case !live:
		err = s.coldMove(ctx, t, vm, src, dst, after, cfg, oldPaths, moved)
	case src.Metadata.ID == dst.Metadata.ID:
		err = s.moveDisksLive(ctx, t, vm, src, after, cfg, moved, res)
	default:
		err = s.liveMigrate(ctx, t, vm, src, dst, after, cfg, p, moved, res)
	}
	if err != nil {
		return nil, err
	}
	// A mirror to another host counts the zeros of a thin disk as work
	// done (it writes them as such); the data it copied is what the disks
	// held.
	var held api.Size
	for _, d := range vm.Status.Disks {
		if slices.Contains(moved, d.Name) {
			held += d.AllocatedBytes
		}
	}
	if held > 0 && res.DiskBytes > held {
		res.DiskBytes = held
	}
	return res, nil
}

// switchTo records where the VM now is: host, disks and state.
func (s *Server) switchTo(ctx context.Context, vm *api.VM, after *api.VM, st *api.AgentVMState) error {
	return state.UpdateKind(ctx, s.st, nil, api.KindVM, vm.Metadata.ID, func(o api.Object) error {
		v := o.(*api.VM)
		v.Spec.Host = after.Spec.Host
		v.Spec.Disks = after.Spec.Disks
		if st != nil {
			v.Status.StateSeq = st.Seq
			inventory.SetPower(v, st.PowerState, st.Reason)
			v.Status.Guest, v.Status.VNC = st.Guest, st.VNC
		}
		return nil
	})
}

// coldMove moves a powered-off VM: the target defines it (copying moved
// disks from where the target reaches them), the source forgets it.
func (s *Server) coldMove(ctx context.Context, t *tasks.Run, vm *api.VM, src, dst *api.Host, after *api.VM, cfg hypervisor.VMConfig, oldPaths map[string]string, moved []string) error {
	for i, d := range cfg.Disks {
		if slices.Contains(moved, d.Name) {
			cfg.Disks[i].Source, cfg.Disks[i].Linked, cfg.Disks[i].Own = oldPaths[d.Name], false, true
		}
	}
	t.Progress(ctx, 20, "registering the VM on host "+dst.Metadata.Name)
	st, err := s.agents.Define(ctx, hosts.TargetOf(dst), cfg)
	if err != nil {
		return fmt.Errorf("define vm %s on host %s: %w", vm.Metadata.Name, dst.Metadata.Name, err)
	}
	if src.Metadata.ID != dst.Metadata.ID {
		if err := s.agents.Release(ctx, hosts.TargetOf(src), vm.Metadata.ID, len(moved) > 0); err != nil {
			// Undo: the VM stays where it was.
			_ = s.agents.Undefine(ctx, hosts.TargetOf(dst), vm.Metadata.ID, false)
			return fmt.Errorf("release vm %s on host %s: %w", vm.Metadata.Name, src.Metadata.Name, err)
		}
	} else {
		for _, d := range moved {
			s.removeOldDisk(ctx, src, vm, d, oldPaths[d])
		}
	}
	return s.switchTo(ctx, vm, after, &st)
}

// removeOldDisk deletes a disk file a same-host move left behind.
func (s *Server) removeOldDisk(ctx context.Context, h *api.Host, vm *api.VM, disk, path string) {
	for _, d := range vm.Spec.Disks {
		if d.Name == disk {
			if err := s.agents.DeleteFile(ctx, hosts.TargetOf(h), d.Datastore.ID, d.Path); err != nil {
				s.log.Warn("cannot remove a moved disk's old file", "vm", vm.Metadata.Name, "path", path, "err", err)
			}
		}
	}
}

// moveDisksLive moves a running VM's disks on its own host.
func (s *Server) moveDisksLive(ctx context.Context, t *tasks.Run, vm *api.VM, h *api.Host, after *api.VM, cfg hypervisor.VMConfig, moved []string, res *api.MigrateResult) error {
	var moves []hypervisor.DiskMove
	for _, d := range cfg.Disks {
		if slices.Contains(moved, d.Name) {
			moves = append(moves, hypervisor.DiskMove{Name: d.Name, Path: d.Path})
		}
	}
	start := time.Now()
	if !t.Resumed {
		if err := s.agents.MoveDisks(ctx, hosts.TargetOf(h), vm.Metadata.ID, moves); err != nil {
			return fmt.Errorf("move the disks of vm %s: %w", vm.Metadata.Name, err)
		}
	}
	st, err := s.followMigration(ctx, t, vm, h, h, nil)
	if err != nil {
		return fmt.Errorf("move the disks of vm %s: %w; it uses its old disks as before", vm.Metadata.Name, err)
	}
	res.TotalMs, res.DiskBytes = time.Since(start).Milliseconds(), api.Size(st.DiskDone)
	// The host keeps the new paths for the VM's next start.
	if _, err := s.agents.Define(ctx, hosts.TargetOf(h), cfg); err != nil {
		return fmt.Errorf("record the new disk paths of vm %s: %w", vm.Metadata.Name, err)
	}
	return s.switchTo(ctx, vm, after, nil)
}

// followMigration polls the source host until its migration (or disk
// move) ends, reporting progress. A user's cancel stops it there.
func (s *Server) followMigration(ctx context.Context, t *tasks.Run, vm *api.VM, src, dst *api.Host, onCancel func(context.Context)) (hypervisor.MigrationStatus, error) {
	var moved int64 = -1
	lastMove, lastAnswer := time.Now(), time.Now()
	for {
		info, err := s.agents.VM(ctx, hosts.TargetOf(src), vm.Metadata.ID)
		if err != nil {
			// QEMU migrates on while its agent restarts: wait for it.
			if ctx.Err() == nil && time.Since(lastAnswer) < s.cfg.MigrationStallTimeout {
				time.Sleep(500 * time.Millisecond)
				continue
			}
		}
		if ctx.Err() != nil {
			if t.Canceled(ctx) {
				cctx, cancel := t.CleanupCtx()
				_ = s.agents.CancelMigration(cctx, hosts.TargetOf(src), vm.Metadata.ID)
				if onCancel != nil {
					onCancel(cctx)
				}
				cancel()
			}
			return hypervisor.MigrationStatus{}, ctx.Err()
		}
		if err != nil {
			return hypervisor.MigrationStatus{}, fmt.Errorf("follow the migration on host %s: %w", src.Metadata.Name, err)
		}
		lastAnswer = time.Now()
		st := info.Migration
		t.Progress(ctx, migrationPercent(st), migrationMessage(st))
		// A cut link leaves TCP waiting for minutes: give up on a stream
		// that stopped moving.
		if now := st.TransferredBytes + st.DiskDone; now != moved {
			moved, lastMove = now, time.Now()
		} else if time.Since(lastMove) > s.cfg.MigrationStallTimeout && st.State != hypervisor.MigrationCompleted {
			cctx, cancel := t.CleanupCtx()
			_ = s.agents.CancelMigration(cctx, hosts.TargetOf(src), vm.Metadata.ID)
			cancel()
			return st, fmt.Errorf("no data moved for %s: the link to the target is cut or too slow", s.cfg.MigrationStallTimeout)
		}
		if st.State != hypervisor.MigrationCompleted && !s.connected(dst.Metadata.ID) {
			// Its agent died or it is cut off: it could not take the VM over.
			cctx, cancel := t.CleanupCtx()
			_ = s.agents.CancelMigration(cctx, hosts.TargetOf(src), vm.Metadata.ID)
			cancel()
			return st, fmt.Errorf("host %s stopped sending heartbeats (its agent is down or it is cut off)", dst.Metadata.Name)
		}
		switch st.State {
		case hypervisor.MigrationCompleted:
			return st, nil
		case hypervisor.MigrationFailed, hypervisor.MigrationCancelled:
			return st, fmt.Errorf("%s: %s", st.State, st.Error)
		case hypervisor.MigrationNone:
			return st, errors.New("the host has no migration of this VM (its agent restarted?)")
		}
		select {
		case <-ctx.Done():
		case <-time.After(migrationPoll):
		}
	}
}

// migrationPoll is how often a migration's progress is read from its
// source host: the switch-over waits for the next read after QEMU is done.
const migrationPoll = 50 * time.Millisecond

// connected says whether a host's agent sends heartbeats.
func (s *Server) connected(hostID string) bool {
	o, ok := s.cache.Get(api.KindHost, hostID)
	return ok && o.(*api.Host).Status.Connection == api.HostConnected
}

// migrationPercent places a status report on the task's 0-100: disks
// (when they move) up to 45, memory up to 95, and 99 once QEMU is done,
// for the switch-over.
func migrationPercent(st hypervisor.MigrationStatus) int {
	if st.State == hypervisor.MigrationCompleted {
		return 99
	}
	pct := 5
	if st.DiskTotal > 0 {
		pct += int(40 * st.DiskDone / st.DiskTotal)
	}
	if st.State == hypervisor.MigrationActive && st.TotalBytes > 0 {
		base := 5
		if st.DiskTotal > 0 {
			base = 45
		}
		sent := float64(st.TransferredBytes) / float64(st.TransferredBytes+st.RemainingBytes+1)
		pct = base + int(sent*float64(95-base))
	}
	return min(pct, 99)
}

func migrationMessage(st hypervisor.MigrationStatus) string {
	var parts []string
	if st.DiskTotal > 0 {
		parts = append(parts, fmt.Sprintf("disks %s of %s copied", api.Size(st.DiskDone), api.Size(st.DiskTotal)))
	}
	if st.State == hypervisor.MigrationActive {
		parts = append(parts, fmt.Sprintf("memory %s sent, %s left, dirtying %s/s, pass %d",
			api.Size(st.TransferredBytes), api.Size(st.RemainingBytes), api.Size(st.DirtyRate), st.Pass))
	}
	if len(parts) == 0 {
		return st.State
	}
	return strings.Join(parts, "; ")
}

// api.OpVMMigrate is the task operation that moves a VM.

// liveMigrate moves a running VM to another host: the target starts a copy
// waiting for it, the source sends memory (and disks over NBD when they
// move too), the copy runs, the source forgets the VM.
func (s *Server) liveMigrate(ctx context.Context, t *tasks.Run, vm *api.VM, src, dst *api.Host, after *api.VM, cfg hypervisor.VMConfig,
	p vmMigrateParams, moved []string, res *api.MigrateResult) error {
	nbd := len(moved) > 0
	o := p.Options
	if t.Resumed {
		return s.resumeMigration(ctx, t, vm, src, dst, after, nbd, res)
	}
	co, _ := s.cache.Get(api.KindCluster, dst.Spec.Cluster.ID)
	release, err := s.places.Admit(vm, co.(*api.Cluster), dst, true)
	if err != nil {
		return err
	}
	t.After(release)
	// The copy gets the hardware the VM runs with (vCPUs and memory
	// hot-added, its display as it started), not what its spec would boot.
	info, err := s.agents.VM(ctx, hosts.TargetOf(src), vm.Metadata.ID)
	if err != nil {
		return fmt.Errorf("read the hardware of vm %s on host %s: %w", vm.Metadata.Name, src.Metadata.Name, err)
	}
	cfg.Hardware = info.Hardware
	t.Progress(ctx, 2, "starting the copy on host "+dst.Metadata.Name)
	prepared := time.Now()
	in, err := s.agents.Incoming(ctx, hosts.TargetOf(dst), agent.IncomingRequest{Config: cfg,
		Options: hypervisor.IncomingOptions{TLS: !o.Insecure, Disks: nbd, Multifd: o.Multifd, Compress: o.Compress}})
	if err != nil {
		return fmt.Errorf("start receiving vm %s on host %s: %w", vm.Metadata.Name, dst.Metadata.Name, err)
	}
	abort := func(c context.Context) {
		// Not for long: a host that cannot be reached drops the copy by
		// itself once it is back (see orphanCopies).
		c, cancel := context.WithTimeout(c, 15*time.Second)
		defer cancel()
		if err := s.agents.AbortIncoming(c, hosts.TargetOf(dst), vm.Metadata.ID); err != nil && !errors.Is(err, api.ErrNotFound) {
			s.log.Warn("cannot remove the copy of a failed migration now; the host drops it when it is back", "vm", vm.Metadata.Name,
				"host", dst.Metadata.Name, "err", err)
		}
	}
	to := hypervisor.MigrateTarget{URI: in.URI, NBD: in.NBD, MaxBandwidth: int64(o.MaxBandwidth),
		DowntimeLimit: time.Duration(o.MaxDowntimeMs) * time.Millisecond, AutoConverge: o.AutoConverge, Multifd: o.Multifd, Compress: o.Compress}
	if !o.Insecure {
		to.TLSHostname = pki.HostDNSName(dst.Metadata.ID)
	}
	res.PrepareMs = time.Since(prepared).Milliseconds()
	if err := s.agents.MigrateOut(ctx, hosts.TargetOf(src), vm.Metadata.ID, to); err != nil {
		cctx, cancel := t.CleanupCtx()
		abort(cctx)
		cancel()
		return fmt.Errorf("start sending vm %s from host %s: %w", vm.Metadata.Name, src.Metadata.Name, err)
	}
	return s.completeMigration(ctx, t, vm, src, dst, after, nbd, res, abort)
}

// completeMigration follows a migration to its end and switches the VM
// over, or undoes the target's copy.
func (s *Server) completeMigration(ctx context.Context, t *tasks.Run, vm *api.VM, src, dst *api.Host, after *api.VM, nbd bool,
	res *api.MigrateResult, abort func(context.Context)) error {
	st, err := s.followMigration(ctx, t, vm, src, dst, abort)
	if err != nil {
		if nbd { // before the abort frees the space the copy took
			err = s.explainCopyFailure(vm, after, err)
		}
		if ctx.Err() == nil {
			cctx, cancel := t.CleanupCtx()
			abort(cctx)
			cancel()
		}
		return fmt.Errorf("migrate vm %s from host %s to %s: %w; it runs on %s as before", vm.Metadata.Name, src.Metadata.Name, dst.Metadata.Name, err, src.Metadata.Name)
	}
	res.TotalMs, res.DowntimeMs = st.TotalTime.Milliseconds(), st.Downtime.Milliseconds()
	res.Transferred, res.Passes, res.DiskBytes = api.Size(st.TransferredBytes), st.Pass, api.Size(st.DiskDone)
	switched := time.Now()
	defer func() { res.SwitchMs = time.Since(switched).Milliseconds() }()
	// The state has gone: a user's cancel can no longer stop the
	// switch-over half-way (only this server's leadership ending can, and
	// the next leader resumes it).
	return s.switchOver(t.Leader, vm, src, dst, after, nbd)
}

// explainCopyFailure names a full target datastore as the cause of a
// failed disk copy: the target host only shows it as a stream that stops.
func (s *Server) explainCopyFailure(vm, after *api.VM, err error) error {
	for i, d := range after.Spec.Disks {
		if i >= len(vm.Spec.Disks) || d.Datastore.ID == vm.Spec.Disks[i].Datastore.ID {
			continue
		}
		o, ok := s.cache.Get(api.KindDatastore, d.Datastore.ID)
		if !ok {
			continue
		}
		ds := o.(*api.Datastore)
		if c := ds.Status.CapacityBytes; c > 0 && ds.Status.FreeBytes < max(1<<20, c/1000) {
			return fmt.Errorf("datastore %s is full (%s free of %s): %w", ds.Metadata.Name, ds.Status.FreeBytes, c, err)
		}
	}
	return err
}

// switchOver runs the target's copy, records it, and has the source forget
// the VM.
func (s *Server) switchOver(ctx context.Context, vm *api.VM, src, dst *api.Host, after *api.VM, nbd bool) error {
	fin, err := s.finishIncoming(ctx, vm, dst)
	if err != nil {
		return s.takeBack(ctx, vm, src, dst, err)
	}
	if err := s.switchTo(ctx, vm, after, &fin); err != nil {
		return err
	}
	if err := s.agents.Release(ctx, hosts.TargetOf(src), vm.Metadata.ID, nbd); err != nil && !errors.Is(err, api.ErrNotFound) {
		s.log.Error("the source host could not forget a migrated VM; its paused copy stays there", "vm", vm.Metadata.Name,
			"host", src.Metadata.Name, "err", err)
	}
	return nil
}

// finishIncoming runs the target's copy, trying again for a while when
// the target cannot be reached (its agent restarting).
func (s *Server) finishIncoming(ctx context.Context, vm *api.VM, dst *api.Host) (api.AgentVMState, error) {
	deadline := time.Now().Add(switchOverRetry)
	for {
		fin, err := s.agents.FinishIncoming(ctx, hosts.TargetOf(dst), vm.Metadata.ID)
		if err == nil || !errors.Is(err, api.ErrUnavailable) || time.Now().After(deadline) || ctx.Err() != nil {
			return fin, err
		}
		time.Sleep(time.Second)
	}
}

// switchOverRetry is how long a switch-over waits for a target host that
// cannot be reached.
const switchOverRetry = 20 * time.Second

// takeBack runs the VM on the source again when its target could not run
// the copy: only when the target surely did not, or two copies would run.
func (s *Server) takeBack(ctx context.Context, vm *api.VM, src, dst *api.Host, finishErr error) error {
	name := vm.Metadata.Name
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	info, err := s.agents.VM(cctx, hosts.TargetOf(dst), vm.Metadata.ID)
	switch {
	case err == nil && !info.Incoming:
		// It did run there after all (the answer was lost).
		return fmt.Errorf("vm %s runs on host %s but the switch-over did not finish: %w; migrate it again to set the inventory right",
			name, dst.Metadata.Name, finishErr)
	case err == nil, agent.NeverReached(finishErr):
		// The copy never ran (or its host never heard of running it).
		if err == nil {
			_ = s.agents.AbortIncoming(cctx, hosts.TargetOf(dst), vm.Metadata.ID)
		}
		if terr := s.agents.CancelMigration(cctx, hosts.TargetOf(src), vm.Metadata.ID); terr != nil {
			return fmt.Errorf("vm %s: host %s could not run it (%v) and host %s could not take it back: %w; it is paused on %s",
				name, dst.Metadata.Name, finishErr, src.Metadata.Name, terr, src.Metadata.Name)
		}
		return fmt.Errorf("migrate vm %s: host %s could not run it after the transfer: %w; it runs on %s as before",
			name, dst.Metadata.Name, finishErr, src.Metadata.Name)
	}
	return fmt.Errorf("migrate vm %s: the switch-over to host %s was interrupted (%w) and the host does not answer: vm %s is paused on %s "+
		"and may run on %s; check host %s before resuming it", name, dst.Metadata.Name, finishErr, name, src.Metadata.Name,
		dst.Metadata.Name, dst.Metadata.Name)
}

// resumeMigration finishes, after a server restart, a migration a previous
// leader started: by what the two hosts say.
func (s *Server) resumeMigration(ctx context.Context, t *tasks.Run, vm *api.VM, src, dst *api.Host, after *api.VM, nbd bool, res *api.MigrateResult) error {
	abort := func(c context.Context) { _ = s.agents.AbortIncoming(c, hosts.TargetOf(dst), vm.Metadata.ID) }
	dinfo, derr := s.agents.VM(ctx, hosts.TargetOf(dst), vm.Metadata.ID)
	sinfo, serr := s.agents.VM(ctx, hosts.TargetOf(src), vm.Metadata.ID)
	switch {
	case derr == nil && !dinfo.Incoming:
		// It finished: only the bookkeeping is left.
		st := dinfo.AgentVMState
		if err := s.switchTo(t.Leader, vm, after, &st); err != nil {
			return err
		}
		if serr == nil {
			_ = s.agents.Release(ctx, hosts.TargetOf(src), vm.Metadata.ID, nbd)
		}
		return nil
	case derr == nil && serr == nil && sinfo.Migration.State == hypervisor.MigrationCompleted:
		return s.switchOver(t.Leader, vm, src, dst, after, nbd)
	case derr == nil && serr == nil && (sinfo.Migration.State == hypervisor.MigrationActive || sinfo.Migration.State == hypervisor.MigrationMirroring ||
		sinfo.Migration.State == hypervisor.MigrationSetup):
		return s.completeMigration(ctx, t, vm, src, dst, after, nbd, res, abort)
	}
	if derr == nil {
		abort(ctx)
	}
	return fmt.Errorf("interrupted: the management server stopped during the migration; vm %s stays on host %s", vm.Metadata.Name, src.Metadata.Name)
}
