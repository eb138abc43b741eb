package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/atomicfile"
	"github.com/vdc-project/vdc/internal/disk"
	"github.com/vdc-project/vdc/internal/hypervisor"
)

// registry is the set of VMs defined on this host. Each VM's config is kept
// in <data>/vms/<id>/config.json so a restarted agent finds it again.
type registry struct {
	dir      string
	drv      hypervisor.Driver
	log      *slog.Logger
	onChange func()

	mu      sync.Mutex
	vms     map[string]*vmEntry
	lastSeq uint64
}

type vmEntry struct {
	op  sync.Mutex // serializes operations on this VM
	cfg hypervisor.VMConfig
	// incoming marks a copy being received by a migration: not a VM of
	// this host (not reported, not saved) until the migration finishes.
	incoming bool
	since    time.Time // when the copy started to be received

	// guarded by registry.mu: what was last reported, and its sequence
	// number, which changes when anything reported changes.
	last api.AgentVMState
	seq  uint64
}

func newRegistry(dir string, drv hypervisor.Driver, log *slog.Logger, onChange func()) *registry {
	return &registry{dir: dir, drv: drv, log: log, onChange: onChange, vms: map[string]*vmEntry{}}
}

// nextSeq orders state changes, also across agent restarts: it is at least
// the wall clock in nanoseconds.
func (r *registry) nextSeq() uint64 {
	s := max(r.lastSeq+1, uint64(time.Now().UnixNano()))
	r.lastSeq = s
	return s
}

func (r *registry) load(ctx context.Context) error {
	if err := os.MkdirAll(r.dir, 0o700); err != nil {
		return fmt.Errorf("create VM dir: %w", err)
	}
	ents, err := os.ReadDir(r.dir)
	if err != nil {
		return fmt.Errorf("read VM dir: %w", err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(r.dir, e.Name(), "config.json"))
		if err != nil {
			// Never registered: a define or an incoming migration that
			// never finished. Clean up what it left.
			if dd, ok := r.drv.(hypervisor.Discarder); ok {
				if err := dd.Discard(ctx, e.Name(), filepath.Join(r.dir, e.Name())); err != nil {
					r.log.Warn("cannot clean up an unfinished VM", "id", e.Name(), "err", err)
					continue
				}
			}
			_ = os.RemoveAll(filepath.Join(r.dir, e.Name()))
			continue
		}
		var cfg hypervisor.VMConfig
		if err := json.Unmarshal(b, &cfg); err != nil {
			r.log.Error("skipping VM with unreadable config", "dir", e.Name(), "err", err)
			continue
		}
		cfg.Dir = filepath.Join(r.dir, cfg.ID)
		st, err := r.drv.Attach(ctx, cfg)
		if err != nil {
			r.log.Error("cannot re-attach VM", "vm", cfg.Name, "id", cfg.ID, "err", err)
			continue
		}
		r.mu.Lock()
		r.vms[cfg.ID] = &vmEntry{cfg: cfg, last: api.AgentVMState{ID: cfg.ID, PowerState: st.Power, Reason: st.Reason, VNC: st.VNC}, seq: r.nextSeq()}
		r.mu.Unlock()
		r.log.Info("re-attached VM", "vm", cfg.Name, "power", st.Power)
	}
	return nil
}

func (r *registry) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.vms)
}

func (r *registry) get(id string) (*vmEntry, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.vms[id]
	if !ok {
		return nil, fmt.Errorf("vm %s: %w", id, hypervisor.ErrNotFound)
	}
	return e, nil
}

// observe reads a VM's state (and its guest's, when the driver talks to
// guests) and returns it with its sequence number.
func (r *registry) observe(ctx context.Context, id string, e *vmEntry) (api.AgentVMState, error) {
	st, err := r.drv.State(ctx, id)
	if err != nil {
		return api.AgentVMState{}, err
	}
	cur := api.AgentVMState{ID: id, PowerState: st.Power, Reason: st.Reason, VNC: st.VNC}
	if l, ok := r.drv.(hypervisor.Leaser); ok {
		cur.Lease = l.Lease(id)
	}
	if ga, ok := r.drv.(hypervisor.GuestAgent); ok && st.Power != hypervisor.StateOff {
		if g, err := ga.Guest(ctx, id); err == nil && g.State != "" {
			cur.Guest = &api.GuestInfo{State: g.State, OS: g.OS, Kernel: g.Kernel, Hostname: g.Hostname,
				IPAddresses: g.IPAddresses, LastSeen: g.LastSeen}
		}
	}
	r.mu.Lock()
	changed := !sameState(e.last, cur)
	if changed {
		e.seq = r.nextSeq()
	}
	e.last = cur
	cur.Seq = e.seq
	r.mu.Unlock()
	if changed && r.onChange != nil {
		r.onChange()
	}
	return cur, nil
}

// sameState compares what matters of two reports (not when the guest last
// answered).
func sameState(a, b api.AgentVMState) bool {
	if a.PowerState != b.PowerState || a.Reason != b.Reason || a.VNC != b.VNC || a.Lease != b.Lease || (a.Guest == nil) != (b.Guest == nil) {
		return false
	}
	if a.Guest == nil {
		return true
	}
	g, h := *a.Guest, *b.Guest
	return g.State == h.State && g.OS == h.OS && g.Kernel == h.Kernel && g.Hostname == h.Hostname && slices.Equal(g.IPAddresses, h.IPAddresses)
}

// measureDisks reports each disk's allocated bytes (and, with virtual, its
// size as the guest sees it, which costs a qemu-img run). Disks without a
// file (sim) are left out.
func measureDisks(ctx context.Context, drv hypervisor.Driver, cfg hypervisor.VMConfig, virtual bool) []api.DiskStatus {
	if st, ok := drv.(hypervisor.Storage); ok {
		// The driver knows the disks' chains (and sim models them).
		if us, err := st.Usage(ctx, cfg.ID); err == nil {
			out := make([]api.DiskStatus, 0, len(us))
			for _, u := range us {
				out = append(out, api.DiskStatus{Name: u.Name, AllocatedBytes: api.Size(u.AllocatedBytes),
					VirtualBytes: api.Size(u.VirtualBytes), SnapshotBytes: api.Size(u.ChainBytes)})
			}
			return out
		}
	}
	var out []api.DiskStatus
	for _, d := range cfg.Disks {
		alloc, err := disk.Allocated(d.Path)
		if err != nil {
			continue
		}
		ds := api.DiskStatus{Name: d.Name, AllocatedBytes: api.Size(alloc)}
		if virtual {
			if info, err := disk.Inspect(ctx, d.Path); err == nil {
				ds.VirtualBytes = api.Size(info.VirtualSize)
			}
		}
		out = append(out, ds)
	}
	return out
}

// define creates or updates a VM. The config is saved only once the driver
// has accepted it.
func (r *registry) define(ctx context.Context, cfg hypervisor.VMConfig) (api.AgentVMState, error) {
	cfg.Dir = filepath.Join(r.dir, cfg.ID)
	r.mu.Lock()
	e, exists := r.vms[cfg.ID]
	if !exists {
		e = &vmEntry{cfg: cfg}
	}
	r.mu.Unlock()
	e.op.Lock()
	defer e.op.Unlock()
	b, _ := json.MarshalIndent(cfg, "", "  ")
	if old, err := os.ReadFile(filepath.Join(cfg.Dir, "config.json")); exists && err == nil && bytes.Equal(old, b) {
		// Same definition as before (every power-on sends it): nothing to do.
		if err := r.syncLease(ctx, cfg); err != nil {
			return api.AgentVMState{}, err
		}
		st, err := r.observe(ctx, cfg.ID, e)
		if err != nil {
			return api.AgentVMState{}, fmt.Errorf("define vm %s: %w", cfg.Name, err)
		}
		return st, nil
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return api.AgentVMState{}, fmt.Errorf("define vm %s: %w", cfg.Name, err)
	}
	if err := r.drv.Define(ctx, cfg); err != nil {
		if !exists {
			os.RemoveAll(cfg.Dir)
		}
		return api.AgentVMState{}, fmt.Errorf("define vm %s: %w", cfg.Name, err)
	}
	if err := atomicfile.WriteFile(filepath.Join(cfg.Dir, "config.json"), b, 0o600); err != nil {
		return api.AgentVMState{}, fmt.Errorf("define vm %s: save config: %w", cfg.Name, err)
	}
	r.mu.Lock()
	e.cfg = cfg
	r.vms[cfg.ID] = e
	r.mu.Unlock()
	if err := r.syncLease(ctx, cfg); err != nil {
		return api.AgentVMState{}, err
	}
	st, err := r.observe(ctx, cfg.ID, e)
	if err != nil {
		return api.AgentVMState{}, fmt.Errorf("define vm %s: %w", cfg.Name, err)
	}
	st.Disks = measureDisks(ctx, r.drv, cfg, true)
	return st, nil
}

// syncLease makes a running VM hold the lease its definition names (HA
// was turned on, its disks moved): a VM that is off takes it when it
// starts. The caller holds e.op.
func (r *registry) syncLease(ctx context.Context, cfg hypervisor.VMConfig) error {
	if err := r.leaseLocked(ctx, cfg.ID, cfg.Lease); err != nil {
		return fmt.Errorf("define vm %s: %w", cfg.Name, err)
	}
	return nil
}

// holdLease makes a running VM hold the lease at path.
func (r *registry) holdLease(ctx context.Context, id, path string) error {
	e, err := r.get(id)
	if err != nil {
		return err
	}
	e.op.Lock()
	defer e.op.Unlock()
	if r.isIncoming(e) {
		return nil
	}
	if err := r.leaseLocked(ctx, id, path); err != nil {
		return err
	}
	_, err = r.observe(ctx, id, e)
	return err
}

// leaseLocked takes a new lease for a running VM. It never lets one go
// (a VM no longer protected keeps its lease until it stops): what it is
// told may be older than the VM's arrival here, and a lease held too long
// only refuses a second copy.
func (r *registry) leaseLocked(ctx context.Context, id, path string) error {
	l, ok := r.drv.(hypervisor.Leaser)
	if !ok || path == "" || l.Lease(id) == path {
		return nil
	}
	st, err := r.drv.State(ctx, id)
	if err != nil || st.Power == hypervisor.StateOff {
		return nil
	}
	return l.HoldLease(ctx, id, path)
}

// ids lists the VMs of this host (not the copies being received).
func (r *registry) ids() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.vms))
	for id, e := range r.vms {
		if !e.incoming {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// undefine removes a VM; one that is not off needs force, which powers it off.
func (r *registry) undefine(ctx context.Context, id string, force bool) error {
	e, err := r.get(id)
	if err != nil {
		return err
	}
	e.op.Lock()
	defer e.op.Unlock()
	st, err := r.drv.State(ctx, id)
	if err != nil {
		return fmt.Errorf("delete vm %s: %w", e.cfg.Name, err)
	}
	if st.Power != hypervisor.StateOff {
		if !force {
			return fmt.Errorf("delete vm %s: it is %s; stop it first or force: %w", e.cfg.Name, st.Power, hypervisor.ErrWrongState)
		}
		if err := r.drv.PowerOff(ctx, id); err != nil {
			return fmt.Errorf("delete vm %s: power off: %w", e.cfg.Name, err)
		}
	}
	if err := r.drv.Undefine(ctx, id); err != nil && !errors.Is(err, hypervisor.ErrNotFound) {
		return fmt.Errorf("delete vm %s: %w", e.cfg.Name, err)
	}
	if err := os.RemoveAll(e.cfg.Dir); err != nil {
		return fmt.Errorf("delete vm %s: remove its files: %w", e.cfg.Name, err)
	}
	r.mu.Lock()
	delete(r.vms, id)
	r.mu.Unlock()
	r.onChange()
	return nil
}

// power runs a power action and returns the resulting state.
func (r *registry) power(ctx context.Context, id string, req api.PowerRequest) (api.AgentVMState, error) {
	e, err := r.get(id)
	if err != nil {
		return api.AgentVMState{}, err
	}
	e.op.Lock()
	defer e.op.Unlock()
	name := e.cfg.Name
	if err := r.doPower(ctx, e, req); err != nil {
		return api.AgentVMState{}, fmt.Errorf("%s vm %s: %w", req.Action, name, err)
	}
	st, err := r.observe(ctx, id, e)
	if err != nil {
		return api.AgentVMState{}, fmt.Errorf("%s vm %s: read state: %w", req.Action, name, err)
	}
	return st, nil
}

func (r *registry) doPower(ctx context.Context, e *vmEntry, req api.PowerRequest) error {
	id := e.cfg.ID
	switch req.Action {
	case api.ActionStart:
		return r.drv.Start(ctx, id)
	case api.ActionReset:
		return r.drv.Reset(ctx, id)
	case api.ActionSuspend:
		return r.drv.Suspend(ctx, id)
	case api.ActionResume:
		return r.drv.Resume(ctx, id)
	case api.ActionStop:
		st, err := r.drv.State(ctx, id)
		if err != nil {
			return err
		}
		// A paused guest cannot act on a shutdown request.
		if req.Force || st.Power == hypervisor.StateSuspended {
			return r.drv.PowerOff(ctx, id)
		}
		return r.shutdown(ctx, e, req.TimeoutSeconds)
	}
	return fmt.Errorf("unknown power action %q: %w", req.Action, hypervisor.ErrNotSupported)
}

// shutdown asks the guest to shut down and powers the VM off if it has not
// within the timeout.
func (r *registry) shutdown(ctx context.Context, e *vmEntry, timeoutSeconds int) error {
	id := e.cfg.ID
	timeout := api.DefaultStopTimeout
	if timeoutSeconds > 0 {
		timeout = time.Duration(timeoutSeconds) * time.Second
	}
	if err := r.drv.Shutdown(ctx, id); err != nil {
		return err
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		st, err := r.drv.State(ctx, id)
		if err != nil {
			return err
		}
		if st.Power == hypervisor.StateOff {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			r.log.Warn("guest did not shut down in time; powering off", "vm", e.cfg.Name, "timeout", timeout)
			return r.drv.PowerOff(ctx, id)
		case <-tick.C:
		}
	}
}

// refresh re-reads one VM's state from the driver.
func (r *registry) refresh(ctx context.Context, id string) {
	if e, err := r.get(id); err == nil {
		_, _ = r.observe(ctx, id, e)
	}
}

// states reads every VM's state, for the heartbeat, and the sequence
// number as of the listing. With disks, it measures the disks too.
func (r *registry) states(ctx context.Context, disks bool) ([]api.AgentVMState, uint64) {
	r.mu.Lock()
	watermark := r.lastSeq
	ids := make([]string, 0, len(r.vms))
	for id, e := range r.vms {
		if !e.incoming {
			ids = append(ids, id)
		}
	}
	r.mu.Unlock()
	sort.Strings(ids)
	out := make([]api.AgentVMState, 0, len(ids))
	for _, id := range ids {
		e, err := r.get(id)
		if err != nil {
			continue
		}
		st, err := r.observe(ctx, id, e)
		if err != nil {
			r.log.Warn("cannot read VM state", "vm", e.cfg.Name, "err", err)
			continue
		}
		if disks {
			st.Disks = measureDisks(ctx, r.drv, e.cfg, false)
		}
		out = append(out, st)
	}
	return out, watermark
}
