package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/atomicfile"
	"github.com/vdc-project/vdc/internal/hypervisor"
)

func (r *Registry) IsIncoming(e *Entry) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return e.incoming
}

// Incoming starts receiving a VM; it is recorded, but not saved nor
// reported, until the migration finishes.
func (r *Registry) Incoming(ctx context.Context, m hypervisor.Migrator, cfg hypervisor.VMConfig, opt hypervisor.IncomingOptions) (hypervisor.Incoming, error) {
	cfg.Dir = filepath.Join(r.dir, cfg.ID)
	e := &Entry{Cfg: cfg, incoming: true, since: time.Now()}
	r.mu.Lock()
	if _, exists := r.vms[cfg.ID]; exists {
		r.mu.Unlock()
		return hypervisor.Incoming{}, fmt.Errorf("receive vm %s: this host already has it: %w", cfg.Name, hypervisor.ErrWrongState)
	}
	r.vms[cfg.ID] = e
	r.mu.Unlock()
	e.Op.Lock()
	defer e.Op.Unlock()
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		r.drop(cfg.ID)
		return hypervisor.Incoming{}, err
	}
	if r.BeforeStart != nil {
		if err := r.BeforeStart(ctx, cfg); err != nil {
			r.drop(cfg.ID)
			_ = os.RemoveAll(cfg.Dir)
			return hypervisor.Incoming{}, fmt.Errorf("receive vm %s: %w", cfg.Name, err)
		}
	}
	in, err := m.Incoming(ctx, cfg, opt)
	if err != nil {
		r.drop(cfg.ID)
		_ = os.RemoveAll(cfg.Dir)
		return in, fmt.Errorf("receive vm %s: %w", cfg.Name, err)
	}
	return in, nil
}

// IncomingOlderThan lists the copies received for longer than age.
func (r *Registry) IncomingOlderThan(age time.Duration) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ids []string
	for id, e := range r.vms {
		if e.incoming && time.Since(e.since) > age {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

func (r *Registry) drop(id string) {
	r.mu.Lock()
	delete(r.vms, id)
	r.mu.Unlock()
}

// FinishIncoming makes a received VM a VM of this host.
func (r *Registry) FinishIncoming(ctx context.Context, m hypervisor.Migrator, id string) (api.AgentVMState, error) {
	e, err := r.Get(id)
	if err != nil {
		return api.AgentVMState{}, err
	}
	e.Op.Lock()
	defer e.Op.Unlock()
	if !r.IsIncoming(e) {
		return r.Observe(ctx, id, e) // finished before (a resumed task asks again)
	}
	if err := m.FinishIncoming(ctx, id); err != nil {
		return api.AgentVMState{}, fmt.Errorf("finish receiving vm %s: %w", e.Cfg.Name, err)
	}
	b, _ := json.MarshalIndent(e.Cfg, "", "  ")
	if err := atomicfile.WriteFile(filepath.Join(e.Cfg.Dir, "config.json"), b, 0o600); err != nil {
		return api.AgentVMState{}, fmt.Errorf("finish receiving vm %s: save config: %w", e.Cfg.Name, err)
	}
	// Joining the host's list is a change of its own: a fresh seq, so that
	// a heartbeat listed while the VM was still incoming (without it) is
	// not taken for this host having lost it.
	r.mu.Lock()
	e.incoming, e.last = false, api.AgentVMState{}
	r.mu.Unlock()
	return r.Observe(ctx, id, e)
}

// AbortIncoming throws a copy being received away.
func (r *Registry) AbortIncoming(ctx context.Context, m hypervisor.Migrator, id string) error {
	e, err := r.Get(id)
	if err != nil {
		return err
	}
	e.Op.Lock()
	defer e.Op.Unlock()
	if !r.IsIncoming(e) {
		return fmt.Errorf("abort receiving vm %s: it is not being received: %w", e.Cfg.Name, hypervisor.ErrWrongState)
	}
	if err := m.AbortIncoming(ctx, id); err != nil {
		return err
	}
	r.drop(id)
	return os.RemoveAll(e.Cfg.Dir)
}

// Release forgets a VM that now runs on another host.
func (r *Registry) Release(ctx context.Context, m hypervisor.Migrator, id string, removeDisks bool) error {
	e, err := r.Get(id)
	if err != nil {
		return err
	}
	e.Op.Lock()
	defer e.Op.Unlock()
	if err := m.Release(ctx, id, removeDisks); err != nil {
		return fmt.Errorf("release vm %s: %w", e.Cfg.Name, err)
	}
	r.drop(id)
	r.onChange()
	return os.RemoveAll(e.Cfg.Dir)
}
