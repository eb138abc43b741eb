package agent

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"

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
	e, err := a.vms.Get(id)
	if err != nil {
		agenthttp.Fail(w, err)
		return
	}
	info := VMInfo{Incoming: a.vms.IsIncoming(e)}
	info.Disks = a.vms.Config(e).Disks
	if !info.Incoming {
		if info.AgentVMState, err = a.vms.Observe(r.Context(), id, e); err != nil {
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
	a.plugNICs(&req.Config)
	in, err := a.vms.Incoming(r.Context(), m, req.Config, req.Options)
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
	st, err := a.vms.FinishIncoming(r.Context(), m, r.PathValue("id"))
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
		err = a.vms.AbortIncoming(r.Context(), m, r.PathValue("id"))
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
		_, err = a.vms.Get(r.PathValue("id"))
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
		err = a.vms.Release(r.Context(), m, r.PathValue("id"), r.URL.Query().Get("removeDisks") == "true")
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
		_, err = a.vms.Get(r.PathValue("id"))
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
