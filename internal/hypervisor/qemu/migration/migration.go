// Package migration is QEMU's migration stream as the driver uses it over
// QMP, apart from any VM state: the capabilities and parameters both ends
// must agree on, the TLS objects, query-migrate's answer, and waiting for
// a migration to or from a file (a snapshot's memory); and Job, the record
// of one migration out or disk move that MigrationStatus reports. The
// driver's vm type runs migrations with these; what they do to the VM
// (its lease, its disk mirrors, its power state) stays with it.
package migration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/qmp"
)

// Monitor sends QMP commands to one running QEMU.
type Monitor interface {
	Execute(ctx context.Context, cmd string, args, out any) error
}

// Job is one migration out (or disk move) of a VM, driven by its own
// goroutine; its status is what MigrationStatus reports.
type Job struct {
	mu     sync.Mutex
	status hypervisor.MigrationStatus
	start  time.Time
	// Cancel stops the goroutine driving the job (set by its starter).
	Cancel context.CancelFunc
	// Done is closed when that goroutine has ended.
	Done chan struct{}
}

// NewJob is a job starting now, in its setup.
func NewJob() *Job {
	return &Job{start: time.Now(), Done: make(chan struct{}), status: hypervisor.MigrationStatus{State: hypervisor.MigrationSetup}}
}

// Get is the job's status now.
func (m *Job) Get() hypervisor.MigrationStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.status
	if st.TotalTime == 0 {
		st.TotalTime = time.Since(m.start)
	}
	return st
}

// Update changes the job's status.
func (m *Job) Update(fn func(st *hypervisor.MigrationStatus)) {
	m.mu.Lock()
	fn(&m.status)
	m.mu.Unlock()
}

// DiskProgress records how far the disk copies are.
func (m *Job) DiskProgress(total, done int64) {
	m.Update(func(st *hypervisor.MigrationStatus) { st.DiskTotal, st.DiskDone = total, done })
}

// Fail records why the job failed, unless it was cancelled.
func (m *Job) Fail(err error) {
	m.Update(func(st *hypervisor.MigrationStatus) {
		if st.State != hypervisor.MigrationCancelled {
			st.State, st.Error = hypervisor.MigrationFailed, err.Error()
		}
		st.TotalTime = time.Since(m.start)
	})
}

// Finished says whether the job completed, failed or was cancelled.
func (m *Job) Finished() bool {
	s := m.Get().State
	return s == hypervisor.MigrationCompleted || s == hypervisor.MigrationFailed || s == hypervisor.MigrationCancelled
}

// TLSObject is the QEMU object holding this host's certificate as the
// receiving ("server") or sending ("client") end of migration and NBD
// streams; a VM that came in and later leaves needs both.
func TLSObject(endpoint string) string { return "vdc-tls-" + endpoint }

// AddTLS loads the host's certificate in dir into QEMU as the TLS object
// of endpoint.
func AddTLS(ctx context.Context, m Monitor, dir, endpoint string) error {
	if dir == "" {
		return errors.New("TLS asked for, but this host has no certificates for QEMU")
	}
	args := map[string]any{"qom-type": "tls-creds-x509", "id": TLSObject(endpoint), "dir": dir, "endpoint": endpoint}
	if endpoint == "server" {
		args["verify-peer"] = true
	}
	err := m.Execute(ctx, "object-add", args, nil)
	var qe *qmp.Error
	if errors.As(err, &qe) && strings.Contains(qe.Desc, "duplicate") {
		// Added for an earlier migration of this process, with the files
		// as they were then: the host renews its certificate, so load
		// them again. Nothing uses the object between migrations; if QEMU
		// says otherwise, the old one serves.
		if m.Execute(ctx, "object-del", map[string]any{"id": TLSObject(endpoint)}, nil) != nil {
			return nil
		}
		return m.Execute(ctx, "object-add", args, nil)
	}
	return err
}

const (
	// UnlimitedBandwidth lifts QEMU's default cap of 128 MiB/s: a
	// migration goes as fast as the link unless the user limits it.
	UnlimitedBandwidth = int64(1) << 40
	// DefaultDowntimeLimit is QEMU's own default.
	DefaultDowntimeLimit = 300 * time.Millisecond
)

// SetParams makes both ends agree: capabilities and parameters must match
// for multifd and compression. tls is the endpoint whose TLS object the
// stream uses ("" for none); extra are more parameters (auto-converge
// among them is a capability).
func SetParams(ctx context.Context, m Monitor, multifd int, compress string, tls string, extra map[string]any) error {
	caps := []map[string]any{
		{"capability": "multifd", "state": multifd > 0 || compress == "zstd"},
		{"capability": "xbzrle", "state": compress == "xbzrle"},
	}
	if auto, ok := extra["auto-converge"]; ok {
		caps = append(caps, map[string]any{"capability": "auto-converge", "state": auto})
		delete(extra, "auto-converge")
	}
	if err := m.Execute(ctx, "migrate-set-capabilities", map[string]any{"capabilities": caps}, nil); err != nil {
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
		params["tls-creds"] = TLSObject(tls)
	}
	if len(params) == 0 {
		return nil
	}
	return m.Execute(ctx, "migrate-set-parameters", params, nil)
}

// Query is the part of query-migrate the driver uses.
type Query struct {
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

// Into copies the figures QEMU reports into st.
func (q Query) Into(st *hypervisor.MigrationStatus) {
	st.TotalBytes, st.TransferredBytes, st.RemainingBytes = q.RAM.Total, q.RAM.Transferred, q.RAM.Remaining
	page := q.RAM.PageSize
	if page == 0 {
		page = 4096
	}
	st.DirtyRate, st.Pass = q.RAM.DirtyPagesRate*page, q.RAM.DirtySyncCount
	st.TotalTime = time.Duration(q.TotalTime) * time.Millisecond
	st.Downtime = time.Duration(q.Downtime) * time.Millisecond
}

// SaveMemory writes the paused VM's RAM and device state to a file, as an
// outgoing migration into it.
func SaveMemory(ctx context.Context, m Monitor, file string) error {
	if err := SetParams(ctx, m, 0, "", "", map[string]any{"max-bandwidth": UnlimitedBandwidth,
		"downtime-limit": DefaultDowntimeLimit.Milliseconds(), "auto-converge": false, "tls-hostname": ""}); err != nil {
		return err
	}
	if err := m.Execute(ctx, "migrate", map[string]any{"uri": "exec:cat > " + shellQuote(file)}, nil); err != nil {
		return err
	}
	return Wait(ctx, m, "save the memory")
}

// RestoreMemory reads a state SaveMemory wrote into a QEMU started with
// -incoming defer.
func RestoreMemory(ctx context.Context, m Monitor, file string) error {
	if err := SetParams(ctx, m, 0, "", "", map[string]any{}); err != nil {
		return err
	}
	if err := m.Execute(ctx, "migrate-incoming", map[string]any{"uri": "exec:cat " + shellQuote(file)}, nil); err != nil {
		return err
	}
	return Wait(ctx, m, "restore the memory")
}

// Wait waits for QEMU's migration (to or from a file) to end; what says
// what it was for, in its error. A cancelled ctx cancels the migration.
func Wait(ctx context.Context, m Monitor, what string) error {
	for {
		var q Query
		if err := m.Execute(ctx, "query-migrate", nil, &q); err != nil {
			return err
		}
		switch q.Status {
		case "completed":
			return nil
		case "failed", "cancelled":
			return fmt.Errorf("%s: %s %s", what, q.Status, q.ErrorDesc)
		}
		select {
		case <-ctx.Done():
			_ = m.Execute(context.Background(), "migrate_cancel", nil, nil)
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
