package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/agent/agenthttp"
	"github.com/vdc-project/vdc/internal/atomicfile"
	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/pki"
)

// IncomingRequest asks a host to receive a VM.
type IncomingRequest struct {
	Config  hypervisor.VMConfig        `json:"config"`
	Options hypervisor.IncomingOptions `json:"options"`
}

// VMInfo is what a host knows of one VM, migrations included.
type VMInfo struct {
	api.AgentVMState
	Incoming  bool                       `json:"incoming"`
	Migration hypervisor.MigrationStatus `json:"migration"`
	// Disks are the VM's disks as this host runs them (their files).
	Disks []hypervisor.DiskConfig `json:"disks,omitempty"`
	// Hardware is the running VM's (hot-added vCPUs and memory, display):
	// a migration's target is built with it.
	Hardware *api.VMHardware `json:"hardware,omitempty"`
}

func (a *Agent) migrationRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /agent/v1/vms/{id}", a.vmInfo)
	mux.HandleFunc("POST /agent/v1/vms/{id}/incoming", a.incoming)
	mux.HandleFunc("POST /agent/v1/vms/{id}/incoming/finish", a.finishIncoming)
	mux.HandleFunc("DELETE /agent/v1/vms/{id}/incoming", a.abortIncoming)
	mux.HandleFunc("POST /agent/v1/vms/{id}/migrate", a.migrateOut)
	mux.HandleFunc("POST /agent/v1/vms/{id}/migration/cancel", a.cancelMigration)
	mux.HandleFunc("POST /agent/v1/vms/{id}/release", a.releaseVM)
	mux.HandleFunc("POST /agent/v1/vms/{id}/move-disks", a.moveDisks)
}

func (a *Agent) migrator() (hypervisor.Migrator, error) {
	m, ok := a.cfg.Driver.(hypervisor.Migrator)
	if !ok {
		return nil, fmt.Errorf("migration: %w", hypervisor.ErrNotSupported)
	}
	return m, nil
}

// migrationIP is the address this host receives migrations on: the one
// the server reaches its agent on.
func (a *Agent) migrationIP() string {
	host, _, err := net.SplitHostPort(a.addr)
	if err != nil {
		return a.addr
	}
	return host
}

// GET /agent/v1/vms/{id}
func (a *Agent) vmInfo(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	e, err := a.vms.get(id)
	if err != nil {
		agenthttp.Fail(w, err)
		return
	}
	info := VMInfo{Incoming: a.vms.isIncoming(e)}
	a.vms.mu.Lock()
	info.Disks = e.cfg.Disks
	a.vms.mu.Unlock()
	if !info.Incoming {
		if info.AgentVMState, err = a.vms.observe(r.Context(), id, e); err != nil {
			agenthttp.Fail(w, err)
			return
		}
		if info.PowerState != hypervisor.StateOff {
			info.Hardware = a.runningHardware(r, id)
		}
	}
	if m, err := a.migrator(); err == nil {
		info.Migration, _ = m.MigrationStatus(r.Context(), id)
	}
	agenthttp.Reply(w, http.StatusOK, info)
}

// POST /agent/v1/vms/{id}/incoming
func (a *Agent) incoming(w http.ResponseWriter, r *http.Request) {
	var req IncomingRequest
	if !agenthttp.Decode(w, r, &req) {
		return
	}
	m, err := a.migrator()
	if err != nil {
		agenthttp.Fail(w, err)
		return
	}
	// The disks' sources are the source host's files, not this host's.
	check := req.Config
	check.Disks = slices.Clone(check.Disks)
	for i := range check.Disks {
		check.Disks[i].Source = ""
	}
	if err := a.checkVMFiles(check); err != nil {
		agenthttp.Fail(w, fmt.Errorf("receive vm %s: %w", req.Config.Name, err))
		return
	}
	req.Options.Address = a.migrationIP()
	in, err := a.vms.incoming(r.Context(), m, req.Config, req.Options)
	if err != nil {
		agenthttp.Fail(w, err)
		return
	}
	agenthttp.Reply(w, http.StatusOK, in)
}

// POST /agent/v1/vms/{id}/incoming/finish
func (a *Agent) finishIncoming(w http.ResponseWriter, r *http.Request) {
	m, err := a.migrator()
	if err != nil {
		agenthttp.Fail(w, err)
		return
	}
	st, err := a.vms.finishIncoming(r.Context(), m, r.PathValue("id"))
	if err != nil {
		agenthttp.Fail(w, err)
		return
	}
	agenthttp.Reply(w, http.StatusOK, st)
}

// DELETE /agent/v1/vms/{id}/incoming
func (a *Agent) abortIncoming(w http.ResponseWriter, r *http.Request) {
	m, err := a.migrator()
	if err == nil {
		err = a.vms.abortIncoming(r.Context(), m, r.PathValue("id"))
	}
	if err != nil {
		agenthttp.Fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// POST /agent/v1/vms/{id}/migrate
func (a *Agent) migrateOut(w http.ResponseWriter, r *http.Request) {
	var to hypervisor.MigrateTarget
	if !agenthttp.Decode(w, r, &to) {
		return
	}
	m, err := a.migrator()
	if err == nil {
		_, err = a.vms.get(r.PathValue("id"))
	}
	if err == nil {
		err = m.MigrateOut(r.Context(), r.PathValue("id"), to)
	}
	if err != nil {
		agenthttp.Fail(w, err)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// POST /agent/v1/vms/{id}/migration/cancel
func (a *Agent) cancelMigration(w http.ResponseWriter, r *http.Request) {
	m, err := a.migrator()
	if err == nil {
		err = m.CancelMigration(r.Context(), r.PathValue("id"))
	}
	if err != nil {
		agenthttp.Fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// POST /agent/v1/vms/{id}/release?removeDisks=true
func (a *Agent) releaseVM(w http.ResponseWriter, r *http.Request) {
	m, err := a.migrator()
	if err == nil {
		err = a.vms.release(r.Context(), m, r.PathValue("id"), r.URL.Query().Get("removeDisks") == "true")
	}
	if err != nil {
		agenthttp.Fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// POST /agent/v1/vms/{id}/move-disks
func (a *Agent) moveDisks(w http.ResponseWriter, r *http.Request) {
	var moves []hypervisor.DiskMove
	if !agenthttp.Decode(w, r, &moves) {
		return
	}
	m, err := a.migrator()
	if err == nil {
		_, err = a.vms.get(r.PathValue("id"))
	}
	if err == nil {
		err = m.MoveDisks(r.Context(), r.PathValue("id"), moves)
	}
	if err != nil {
		agenthttp.Fail(w, err)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

func (r *registry) isIncoming(e *vmEntry) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return e.incoming
}

// incoming starts receiving a VM; it is recorded, but not saved nor
// reported, until the migration finishes.
func (r *registry) incoming(ctx context.Context, m hypervisor.Migrator, cfg hypervisor.VMConfig, opt hypervisor.IncomingOptions) (hypervisor.Incoming, error) {
	cfg.Dir = filepath.Join(r.dir, cfg.ID)
	e := &vmEntry{cfg: cfg, incoming: true, since: time.Now()}
	r.mu.Lock()
	if _, exists := r.vms[cfg.ID]; exists {
		r.mu.Unlock()
		return hypervisor.Incoming{}, fmt.Errorf("receive vm %s: this host already has it: %w", cfg.Name, hypervisor.ErrWrongState)
	}
	r.vms[cfg.ID] = e
	r.mu.Unlock()
	e.op.Lock()
	defer e.op.Unlock()
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		r.drop(cfg.ID)
		return hypervisor.Incoming{}, err
	}
	in, err := m.Incoming(ctx, cfg, opt)
	if err != nil {
		r.drop(cfg.ID)
		_ = os.RemoveAll(cfg.Dir)
		return in, fmt.Errorf("receive vm %s: %w", cfg.Name, err)
	}
	return in, nil
}

// incomingOlderThan lists the copies received for longer than age.
func (r *registry) incomingOlderThan(age time.Duration) []string {
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

func (r *registry) drop(id string) {
	r.mu.Lock()
	delete(r.vms, id)
	r.mu.Unlock()
}

// finishIncoming makes a received VM a VM of this host.
func (r *registry) finishIncoming(ctx context.Context, m hypervisor.Migrator, id string) (api.AgentVMState, error) {
	e, err := r.get(id)
	if err != nil {
		return api.AgentVMState{}, err
	}
	e.op.Lock()
	defer e.op.Unlock()
	if !r.isIncoming(e) {
		return r.observe(ctx, id, e) // finished before (a resumed task asks again)
	}
	if err := m.FinishIncoming(ctx, id); err != nil {
		return api.AgentVMState{}, fmt.Errorf("finish receiving vm %s: %w", e.cfg.Name, err)
	}
	b, _ := json.MarshalIndent(e.cfg, "", "  ")
	if err := atomicfile.WriteFile(filepath.Join(e.cfg.Dir, "config.json"), b, 0o600); err != nil {
		return api.AgentVMState{}, fmt.Errorf("finish receiving vm %s: save config: %w", e.cfg.Name, err)
	}
	r.mu.Lock()
	e.incoming = false
	r.mu.Unlock()
	return r.observe(ctx, id, e)
}

// abortIncoming throws a copy being received away.
func (r *registry) abortIncoming(ctx context.Context, m hypervisor.Migrator, id string) error {
	e, err := r.get(id)
	if err != nil {
		return err
	}
	e.op.Lock()
	defer e.op.Unlock()
	if !r.isIncoming(e) {
		return fmt.Errorf("abort receiving vm %s: it is not being received: %w", e.cfg.Name, hypervisor.ErrWrongState)
	}
	if err := m.AbortIncoming(ctx, id); err != nil {
		return err
	}
	r.drop(id)
	return os.RemoveAll(e.cfg.Dir)
}

// release forgets a VM that now runs on another host.
func (r *registry) release(ctx context.Context, m hypervisor.Migrator, id string, removeDisks bool) error {
	e, err := r.get(id)
	if err != nil {
		return err
	}
	e.op.Lock()
	defer e.op.Unlock()
	if err := m.Release(ctx, id, removeDisks); err != nil {
		return fmt.Errorf("release vm %s: %w", e.cfg.Name, err)
	}
	r.drop(id)
	r.onChange()
	return os.RemoveAll(e.cfg.Dir)
}

// QEMUTLSDir is where an agent keeps its certificate in the layout QEMU's
// tls-creds-x509 reads, for encrypted migrations.
func QEMUTLSDir(dataDir string) string { return filepath.Join(dataDir, "pki", "qemu") }

// writeQEMUTLS lays the host's certificate out for QEMU: the same
// certificate serves as server (receiving) and client (sending).
func (a *Agent) writeQEMUTLS() error {
	dir := QEMUTLSDir(a.cfg.DataDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for from, tos := range map[string][]string{"ca.pem": {"ca-cert.pem"}, "cert.pem": {"server-cert.pem", "client-cert.pem"},
		"key.pem": {"server-key.pem", "client-key.pem"}} {
		b, err := os.ReadFile(a.pkiPath(from))
		if err != nil {
			return err
		}
		for _, to := range tos {
			if err := atomicfile.WriteFile(filepath.Join(dir, to), b, 0o600); err != nil {
				return err
			}
		}
	}
	return atomicfile.WriteFile(filepath.Join(dir, "dh-params.pem"), []byte(pki.FFDHE2048), 0o600)
}
