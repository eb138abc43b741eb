package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu/proc"
	"github.com/vdc-project/vdc/internal/qmp"
)

var _ hypervisor.Migrator = (*Driver)(nil)
var _ hypervisor.Discarder = (*Driver)(nil)

// migration is one migration out (or disk move) of a VM, driven by its
// own goroutine; status is what MigrationStatus reports.
type migration struct {
	mu     sync.Mutex
	status hypervisor.MigrationStatus
	start  time.Time
	cancel context.CancelFunc
	done   chan struct{}
}

func (m *migration) get() hypervisor.MigrationStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.status
	if st.TotalTime == 0 {
		st.TotalTime = time.Since(m.start)
	}
	return st
}

func (m *migration) update(fn func(st *hypervisor.MigrationStatus)) {
	m.mu.Lock()
	fn(&m.status)
	m.mu.Unlock()
}

// diskProgress records how far the disk copies are.
func (m *migration) diskProgress(total, done int64) {
	m.update(func(st *hypervisor.MigrationStatus) { st.DiskTotal, st.DiskDone = total, done })
}

func (m *migration) fail(err error) {
	m.update(func(st *hypervisor.MigrationStatus) {
		if st.State != hypervisor.MigrationCancelled {
			st.State, st.Error = hypervisor.MigrationFailed, err.Error()
		}
		st.TotalTime = time.Since(m.start)
	})
}

func (m *migration) finished() bool {
	s := m.get().State
	return s == hypervisor.MigrationCompleted || s == hypervisor.MigrationFailed || s == hypervisor.MigrationCancelled
}

// tlsObject is the QEMU object holding this host's certificate as the
// receiving ("server") or sending ("client") end of migration and NBD
// streams; a VM that came in and later leaves needs both.
func tlsObject(endpoint string) string { return "vdc-tls-" + endpoint }

func (v *vm) addTLS(ctx context.Context, endpoint string) error {
	if v.d.opt.TLSDir == "" {
		return errors.New("TLS asked for, but this host has no certificates for QEMU")
	}
	args := map[string]any{"qom-type": "tls-creds-x509", "id": tlsObject(endpoint), "dir": v.d.opt.TLSDir, "endpoint": endpoint}
	if endpoint == "server" {
		args["verify-peer"] = true
	}
	err := v.command(ctx, "object-add", args)
	var qe *qmp.Error
	if errors.As(err, &qe) && strings.Contains(qe.Desc, "duplicate") {
		// Added for an earlier migration of this process, with the files
		// as they were then: the host renews its certificate, so load
		// them again. Nothing uses the object between migrations; if QEMU
		// says otherwise, the old one serves.
		if v.command(ctx, "object-del", map[string]any{"id": tlsObject(endpoint)}) != nil {
			return nil
		}
		return v.command(ctx, "object-add", args)
	}
	return err
}

// setMigrationParams makes both ends agree: capabilities and parameters
// must match for multifd and compression.
const (
	// unlimitedBandwidth lifts QEMU's default cap of 128 MiB/s: a
	// migration goes as fast as the link unless the user limits it.
	unlimitedBandwidth = int64(1) << 40
	// defaultDowntimeLimit is QEMU's own default.
	defaultDowntimeLimit = 300 * time.Millisecond
)

func (v *vm) setMigrationParams(ctx context.Context, multifd int, compress string, tls string, extra map[string]any) error {
	caps := []map[string]any{
		{"capability": "multifd", "state": multifd > 0 || compress == "zstd"},
		{"capability": "xbzrle", "state": compress == "xbzrle"},
	}
	if auto, ok := extra["auto-converge"]; ok {
		caps = append(caps, map[string]any{"capability": "auto-converge", "state": auto})
		delete(extra, "auto-converge")
	}
	if err := v.command(ctx, "migrate-set-capabilities", map[string]any{"capabilities": caps}); err != nil {
		return err
	}
	params := map[string]any{}
	for k, val := range extra {
		params[k] = val
	}
	if multifd > 0 || compress == "zstd" {
		params["multifd-channels"] = max(multifd, 2)
		params["multifd-compression"] = "none"
		if compress == "zstd" {
			params["multifd-compression"] = "zstd"
		}
	}
	if compress == "xbzrle" {
		params["xbzrle-cache-size"] = 64 << 20
	}
	// The creds are a parameter that stays: set it either way.
	params["tls-creds"] = ""
	if tls != "" {
		params["tls-creds"] = tlsObject(tls)
	}
	if len(params) == 0 {
		return nil
	}
	return v.command(ctx, "migrate-set-parameters", params)
}

// forget drops a VM from the driver and removes its runtime files (not
// its disks).
func (v *vm) forget() {
	v.release()
	if v.p.Run != v.p.Dir {
		_ = os.RemoveAll(v.p.Run)
	}
	for _, f := range []string{v.p.StateFile(), v.p.PIDFile()} {
		_ = os.Remove(f)
	}
	v.d.mu.Lock()
	if v.d.vms[v.cfg.ID] == v {
		delete(v.d.vms, v.cfg.ID)
	}
	v.d.mu.Unlock()
}

// qmpMigrate is the part of query-migrate we use.
type qmpMigrate struct {
	Status    string `json:"status"`
	TotalTime int64  `json:"total-time"`
	Downtime  int64  `json:"downtime"`
	ErrorDesc string `json:"error-desc"`
	RAM       struct {
		Total          int64 `json:"total"`
		Transferred    int64 `json:"transferred"`
		Remaining      int64 `json:"remaining"`
		DirtyPagesRate int64 `json:"dirty-pages-rate"`
		DirtySyncCount int64 `json:"dirty-sync-count"`
		PageSize       int64 `json:"page-size"`
	} `json:"ram"`
}

func (q qmpMigrate) into(st *hypervisor.MigrationStatus) {
	st.TotalBytes, st.TransferredBytes, st.RemainingBytes = q.RAM.Total, q.RAM.Transferred, q.RAM.Remaining
	page := q.RAM.PageSize
	if page == 0 {
		page = 4096
	}
	st.DirtyRate, st.Pass = q.RAM.DirtyPagesRate*page, q.RAM.DirtySyncCount
	st.TotalTime = time.Duration(q.TotalTime) * time.Millisecond
	st.Downtime = time.Duration(q.Downtime) * time.Millisecond
}

// MigrationStatus reports the VM's current or last migration out.
func (d *Driver) MigrationStatus(ctx context.Context, id string) (hypervisor.MigrationStatus, error) {
	v, err := d.get(id)
	if err != nil {
		return hypervisor.MigrationStatus{}, err
	}
	v.mu.Lock()
	m := v.mig
	v.mu.Unlock()
	if m == nil {
		return v.qemuMigrationStatus(ctx)
	}
	return m.get(), nil
}

// qemuMigrationStatus reads the state of a migration this driver did not
// start (the agent that started it restarted) from QEMU itself.
func (v *vm) qemuMigrationStatus(ctx context.Context) (hypervisor.MigrationStatus, error) {
	var q qmpMigrate
	if err := v.query(ctx, "query-migrate", &q); err != nil {
		return hypervisor.MigrationStatus{}, fmt.Errorf("read the migration of vm %s: %w", v.cfg.Name, err)
	}
	var st hypervisor.MigrationStatus
	q.into(&st)
	switch q.Status {
	case "", "none":
		st.State = hypervisor.MigrationNone
	case "completed":
		// Disk copies that went along end as the agent that started them
		// would have ended them: in step with the target.
		if err := v.adoptMirrors(ctx); err != nil {
			return st, err
		}
		if err := v.finishMirrors(ctx, false); err != nil {
			return st, fmt.Errorf("finish the disk copies of vm %s: %w", v.cfg.Name, err)
		}
		if err := v.dropLease(ctx); err != nil {
			return st, err
		}
		st.State = hypervisor.MigrationCompleted
	case "failed":
		st.State, st.Error = hypervisor.MigrationFailed, q.ErrorDesc
	case "cancelled", "cancelling":
		st.State = hypervisor.MigrationCancelled
	default:
		st.State = hypervisor.MigrationActive
	}
	return st, nil
}

// CancelMigration stops a migration out; the VM goes on running here.
func (d *Driver) CancelMigration(ctx context.Context, id string) error {
	v, err := d.get(id)
	if err != nil {
		return err
	}
	v.mu.Lock()
	m := v.mig
	v.mu.Unlock()
	if m != nil && m.get().State == hypervisor.MigrationCompleted {
		// The target never took over: run here again. QEMU re-activates
		// the disks it handed over (the mirrors, if any, never pivoted).
		// The lease says whether the target really never ran it.
		if err := v.run(ctx); err != nil {
			return fmt.Errorf("run vm %s again after a migration its target did not take: %w", v.cfg.Name, err)
		}
		m.update(func(st *hypervisor.MigrationStatus) { st.State = hypervisor.MigrationCancelled })
		v.log.Warn("migration taken back: the VM runs here again", "vm", v.cfg.Name)
		return nil
	}
	if m == nil {
		return v.cancelQEMUMigration(ctx)
	}
	if m.finished() {
		return fmt.Errorf("cancel the migration of vm %s: none is running: %w", v.cfg.Name, hypervisor.ErrWrongState)
	}
	m.update(func(st *hypervisor.MigrationStatus) { st.State = hypervisor.MigrationCancelled })
	_ = v.command(ctx, "migrate_cancel", nil)
	m.cancel()
	select {
	case <-m.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	// QEMU resumes a VM whose migration it cancelled; make sure.
	var st struct {
		Status string `json:"status"`
	}
	if err := v.query(ctx, "query-status", &st); err == nil && st.Status != "running" && v.state().Power == hypervisor.StateOn {
		_ = v.command(ctx, "cont", nil)
	}
	return nil
}

// cancelQEMUMigration cancels, or takes back, a migration this driver did
// not start (the agent that started it restarted).
func (v *vm) cancelQEMUMigration(ctx context.Context) error {
	st, err := v.qemuMigrationStatus(ctx)
	if err != nil {
		return err
	}
	switch st.State {
	case hypervisor.MigrationActive:
		if err := v.command(ctx, "migrate_cancel", nil); err != nil {
			return fmt.Errorf("cancel the migration of vm %s: %w", v.cfg.Name, err)
		}
		for i := 0; i < 100; i++ {
			if st, err = v.qemuMigrationStatus(ctx); err != nil || st.State != hypervisor.MigrationActive {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err := v.adoptMirrors(ctx); err == nil {
			_ = v.finishMirrors(ctx, true)
		}
	case hypervisor.MigrationCompleted:
	default:
		return fmt.Errorf("cancel the migration of vm %s: none is running: %w", v.cfg.Name, hypervisor.ErrWrongState)
	}
	var run struct {
		Status string `json:"status"`
	}
	if err := v.query(ctx, "query-status", &run); err == nil && run.Status != "running" {
		if err := v.run(ctx); err != nil {
			return fmt.Errorf("run vm %s again after cancelling its migration: %w", v.cfg.Name, err)
		}
	}
	return nil
}

// Release forgets a VM that now runs on another host.
func (d *Driver) Release(ctx context.Context, id string, removeDisks bool) error {
	v, err := d.get(id)
	if err != nil {
		return err
	}
	v.mu.Lock()
	v.stopping = true
	exited, pid := v.exited, v.pid
	v.mu.Unlock()
	if exited != nil {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_ = v.command(qctx, "quit", nil)
		cancel()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			if err := proc.KillAndWait(pid, exited); err != nil {
				return fmt.Errorf("release vm %s: %w", v.cfg.Name, err)
			}
		}
	}
	if removeDisks {
		for _, dc := range v.cfg.Disks {
			_ = os.Remove(dc.Path)
			_ = os.Remove(filepath.Dir(dc.Path))
		}
	}
	v.forget()
	return nil
}
