// Package registry keeps the VMs defined on a host: their configs in the
// agent's data dir, what the hypervisor driver says of them, the state
// last reported to the server and its sequence numbers, and the copies
// being received by migrations. It calls the hypervisor driver only.
package registry

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

// Registry is the set of VMs defined on this host. Each VM's config is
// kept in <data>/vms/<id>/config.json so a restarted agent finds it again.
type Registry struct {
	dir      string
	drv      hypervisor.Driver
	log      *slog.Logger
	onChange func()
	// BeforeStart, when set, readies what a VM needs on the host before
	// it starts (its NICs' ports); its error fails the start.
	BeforeStart func(ctx context.Context, cfg hypervisor.VMConfig) error

	mu      sync.Mutex
	vms     map[string]*Entry
	lastSeq uint64
}

// Entry is one VM of the registry.
type Entry struct {
	Op sync.Mutex // serializes operations on this VM
	// Cfg is the VM's config. It changes (SaveConfig) with Op held and
	// under the registry's lock: read it holding either (Config).
	Cfg hypervisor.VMConfig
	// Incoming marks a copy being received by a migration: not a VM of
	// this host (not reported, not saved) until the migration finishes.
	incoming bool
	since    time.Time // when the copy started to be received

	// guarded by registry.mu: what was last reported, and its sequence
	// number, which changes when anything reported changes.
	last api.AgentVMState
	seq  uint64
}

// New is the registry of the VMs kept in dir, run by drv; onChange is
// called when the VMs' states change.
func New(dir string, drv hypervisor.Driver, log *slog.Logger, onChange func()) *Registry {
	return &Registry{dir: dir, drv: drv, log: log, onChange: onChange, vms: map[string]*Entry{}}
}

// Config is the VM's config now.
func (r *Registry) Config(e *Entry) hypervisor.VMConfig {
	r.mu.Lock()
	defer r.mu.Unlock()
	return e.Cfg
}

// nextSeq orders state changes, also across agent restarts: it is at least
// the wall clock in nanoseconds.
func (r *Registry) nextSeq() uint64 {
	s := max(r.lastSeq+1, uint64(time.Now().UnixNano()))
	r.lastSeq = s
	return s
}

func (r *Registry) Load(ctx context.Context) error {
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
		r.vms[cfg.ID] = &Entry{Cfg: cfg, last: api.AgentVMState{ID: cfg.ID, PowerState: st.Power, Reason: st.Reason, VNC: st.VNC}, seq: r.nextSeq()}
		r.mu.Unlock()
		r.log.Info("re-attached VM", "vm", cfg.Name, "power", st.Power)
	}
	return nil
}

func (r *Registry) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.vms)
}

func (r *Registry) Get(id string) (*Entry, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.vms[id]
	if !ok {
		return nil, fmt.Errorf("vm %s: %w", id, hypervisor.ErrNotFound)
	}
	return e, nil
}

// Observe reads a VM's state (and its guest's, when the driver talks to
// guests) and returns it with its sequence number.
func (r *Registry) Observe(ctx context.Context, id string, e *Entry) (api.AgentVMState, error) {
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

// MeasureDisks reports each disk's allocated bytes (and, with virtual, its
// size as the guest sees it, which costs a qemu-img run). Disks without a
// file (sim) are left out.
func MeasureDisks(ctx context.Context, drv hypervisor.Driver, cfg hypervisor.VMConfig, virtual bool) []api.DiskStatus {
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

// Define creates or updates a VM. The config is saved only once the driver
// has accepted it.
func (r *Registry) Define(ctx context.Context, cfg hypervisor.VMConfig) (api.AgentVMState, error) {
	cfg.Dir = filepath.Join(r.dir, cfg.ID)
	r.mu.Lock()
	e, exists := r.vms[cfg.ID]
	if !exists {
		e = &Entry{Cfg: cfg}
	}
	r.mu.Unlock()
	e.Op.Lock()
	defer e.Op.Unlock()
	b, _ := json.MarshalIndent(cfg, "", "  ")
	if old, err := os.ReadFile(filepath.Join(cfg.Dir, "config.json")); exists && err == nil && bytes.Equal(old, b) {
		// Same definition as before (every power-on sends it): nothing to do.
		if err := r.SyncLease(ctx, cfg); err != nil {
			return api.AgentVMState{}, err
		}
		st, err := r.Observe(ctx, cfg.ID, e)
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
	e.Cfg = cfg
	r.vms[cfg.ID] = e
	r.mu.Unlock()
	if err := r.SyncLease(ctx, cfg); err != nil {
		return api.AgentVMState{}, err
	}
	st, err := r.Observe(ctx, cfg.ID, e)
	if err != nil {
		return api.AgentVMState{}, fmt.Errorf("define vm %s: %w", cfg.Name, err)
	}
	st.Disks = MeasureDisks(ctx, r.drv, cfg, true)
	return st, nil
}

// SyncLease makes a running VM hold the lease its definition names (HA
// was turned on, its disks moved): a VM that is off takes it when it
// starts. The caller holds e.Op.
func (r *Registry) SyncLease(ctx context.Context, cfg hypervisor.VMConfig) error {
	if err := r.leaseLocked(ctx, cfg.ID, cfg.Lease); err != nil {
		return fmt.Errorf("define vm %s: %w", cfg.Name, err)
	}
	return nil
}

// HoldLease makes a running VM hold the lease at path.
func (r *Registry) HoldLease(ctx context.Context, id, path string) error {
	e, err := r.Get(id)
	if err != nil {
		return err
	}
	e.Op.Lock()
	defer e.Op.Unlock()
	if r.IsIncoming(e) {
		return nil
	}
	if err := r.leaseLocked(ctx, id, path); err != nil {
		return err
	}
	_, err = r.Observe(ctx, id, e)
	return err
}

// leaseLocked takes a new lease for a running VM. It never lets one go
// (a VM no longer protected keeps its lease until it stops): what it is
// told may be older than the VM's arrival here, and a lease held too long
// only refuses a second copy.
func (r *Registry) leaseLocked(ctx context.Context, id, path string) error {
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

// Configs lists the configs of every VM of this host and of the copies
// being received.
func (r *Registry) Configs() []hypervisor.VMConfig {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]hypervisor.VMConfig, 0, len(r.vms))
	for _, e := range r.vms {
		out = append(out, e.Cfg)
	}
	return out
}

// IDs lists the VMs of this host (not the copies being received).
func (r *Registry) IDs() []string {
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

// Undefine removes a VM; one that is not off needs force, which powers it off.
func (r *Registry) Undefine(ctx context.Context, id string, force bool) error {
	e, err := r.Get(id)
	if err != nil {
		return err
	}
	e.Op.Lock()
	defer e.Op.Unlock()
	st, err := r.drv.State(ctx, id)
	if err != nil {
		return fmt.Errorf("delete vm %s: %w", e.Cfg.Name, err)
	}
	if st.Power != hypervisor.StateOff {
		if !force {
			return fmt.Errorf("delete vm %s: it is %s; stop it first or force: %w", e.Cfg.Name, st.Power, hypervisor.ErrWrongState)
		}
		if err := r.drv.PowerOff(ctx, id); err != nil {
			return fmt.Errorf("delete vm %s: power off: %w", e.Cfg.Name, err)
		}
	}
	if err := r.drv.Undefine(ctx, id); err != nil && !errors.Is(err, hypervisor.ErrNotFound) {
		return fmt.Errorf("delete vm %s: %w", e.Cfg.Name, err)
	}
	if err := os.RemoveAll(e.Cfg.Dir); err != nil {
		return fmt.Errorf("delete vm %s: remove its files: %w", e.Cfg.Name, err)
	}
	r.mu.Lock()
	delete(r.vms, id)
	r.mu.Unlock()
	r.onChange()
	return nil
}

// Power runs a power action and returns the resulting state.
func (r *Registry) Power(ctx context.Context, id string, req api.PowerRequest) (api.AgentVMState, error) {
	e, err := r.Get(id)
	if err != nil {
		return api.AgentVMState{}, err
	}
	e.Op.Lock()
	defer e.Op.Unlock()
	name := e.Cfg.Name
	if err := r.doPower(ctx, e, req); err != nil {
		return api.AgentVMState{}, fmt.Errorf("%s vm %s: %w", req.Action, name, err)
	}
	st, err := r.Observe(ctx, id, e)
	if err != nil {
		return api.AgentVMState{}, fmt.Errorf("%s vm %s: read state: %w", req.Action, name, err)
	}
	return st, nil
}

func (r *Registry) doPower(ctx context.Context, e *Entry, req api.PowerRequest) error {
	id := e.Cfg.ID
	switch req.Action {
	case api.ActionStart:
		if r.BeforeStart != nil {
			if err := r.BeforeStart(ctx, e.Cfg); err != nil {
				return err
			}
		}
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
func (r *Registry) shutdown(ctx context.Context, e *Entry, timeoutSeconds int) error {
	id := e.Cfg.ID
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
			r.log.Warn("guest did not shut down in time; powering off", "vm", e.Cfg.Name, "timeout", timeout)
			return r.drv.PowerOff(ctx, id)
		case <-tick.C:
		}
	}
}

// Refresh re-reads one VM's state from the driver.
func (r *Registry) Refresh(ctx context.Context, id string) {
	if e, err := r.Get(id); err == nil {
		_, _ = r.Observe(ctx, id, e)
	}
}

// States reads every VM's state, for the heartbeat, and the sequence
// number as of the listing. With disks, it measures the disks too.
func (r *Registry) States(ctx context.Context, disks bool) ([]api.AgentVMState, uint64) {
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
		e, err := r.Get(id)
		if err != nil {
			continue
		}
		st, err := r.Observe(ctx, id, e)
		if err != nil {
			r.log.Warn("cannot read VM state", "vm", e.Cfg.Name, "err", err)
			continue
		}
		if disks {
			st.Disks = MeasureDisks(ctx, r.drv, e.Cfg, false)
		}
		out = append(out, st)
	}
	return out, watermark
}

// SaveConfig records a VM's config after a storage operation.
func (r *Registry) SaveConfig(e *Entry, cfg hypervisor.VMConfig) error {
	b, _ := json.MarshalIndent(cfg, "", "  ")
	if err := atomicfile.WriteFile(filepath.Join(cfg.Dir, "config.json"), b, 0o600); err != nil {
		return fmt.Errorf("vm %s: save config: %w", cfg.Name, err)
	}
	r.mu.Lock()
	e.Cfg = cfg
	r.mu.Unlock()
	return nil
}
