package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vdc-project/vdc/internal/disk"
	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/qmp"
)

var _ hypervisor.Migrator = (*Driver)(nil)
var _ hypervisor.Discarder = (*Driver)(nil)

// incomingFile records, in a received VM's directory, the disks Incoming
// made, so that an agent that died mid-migration can remove them.
const incomingFile = "incoming.json"

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

// Incoming starts a copy of a VM waiting for its state.
func (d *Driver) Incoming(ctx context.Context, cfg hypervisor.VMConfig, opt hypervisor.IncomingOptions) (hypervisor.Incoming, error) {
	var in hypervisor.Incoming
	if err := validate(cfg); err != nil {
		return in, err
	}
	d.mu.Lock()
	_, exists := d.vms[cfg.ID]
	d.mu.Unlock()
	if exists {
		return in, fmt.Errorf("receive vm %s: it is already on this host: %w", cfg.Name, hypervisor.ErrWrongState)
	}
	if opt.Address == "" {
		return in, errors.New("receive vm: no address to receive on")
	}
	v := d.newVM(cfg)
	v.incoming = true
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return in, err
	}
	var err error
	defer func() {
		if err != nil {
			v.abortIncoming(context.Background())
		}
	}()
	if opt.Disks {
		err = v.makeEmptyDisks(ctx)
		b, _ := json.Marshal(v.made)
		if werr := os.WriteFile(filepath.Join(cfg.Dir, incomingFile), b, 0o600); err == nil {
			err = werr
		}
		if err != nil {
			return in, fmt.Errorf("receive vm %s: %w", cfg.Name, err)
		}
	} else {
		for _, dc := range cfg.Disks {
			if _, serr := os.Stat(dc.Path); serr != nil {
				err = fmt.Errorf("receive vm %s: disk %s is not reachable from this host: %w", cfg.Name, dc.Name, serr)
				return in, err
			}
		}
	}
	extra := []string{"-incoming", "defer"}
	if opt.Disks {
		extra = append(extra, "-S") // runs only once the disks are complete
	}
	// The copy has the sender's hardware, hot-added vCPUs and memory
	// included: QEMU only takes a state into the same devices.
	hw := hypervisor.BootHardware(cfg)
	if cfg.Hardware != nil {
		hw = *cfg.Hardware
	}
	if err = v.launch(ctx, hw, extra); err != nil {
		return in, fmt.Errorf("receive vm %s: %w", cfg.Name, err)
	}
	d.mu.Lock()
	d.vms[cfg.ID] = v
	d.mu.Unlock()
	if opt.TLS {
		if err = v.addTLS(ctx, "server"); err != nil {
			return in, fmt.Errorf("receive vm %s: %w", cfg.Name, err)
		}
	}
	tls := ""
	if opt.TLS {
		tls = "server"
	}
	if err = v.setMigrationParams(ctx, opt.Multifd, opt.Compress, tls, map[string]any{}); err != nil {
		return in, fmt.Errorf("receive vm %s: %w", cfg.Name, err)
	}
	if opt.Disks {
		if in.NBD, err = v.exportDisks(ctx, opt.Address, opt.TLS); err != nil {
			return in, fmt.Errorf("receive vm %s: %w", cfg.Name, err)
		}
	}
	if err = v.command(ctx, "migrate-incoming", map[string]any{"uri": "tcp:" + net.JoinHostPort(opt.Address, "0")}); err != nil {
		return in, fmt.Errorf("receive vm %s: %w", cfg.Name, err)
	}
	var st struct {
		SocketAddress []struct {
			Host string `json:"host"`
			Port string `json:"port"`
		} `json:"socket-address"`
	}
	if err = v.query(ctx, "query-migrate", &st); err != nil {
		return in, err
	}
	if len(st.SocketAddress) == 0 {
		err = fmt.Errorf("receive vm %s: QEMU does not say where it listens", cfg.Name)
		return in, err
	}
	in.URI = "tcp:" + net.JoinHostPort(opt.Address, st.SocketAddress[0].Port)
	return in, nil
}

// makeEmptyDisks creates the disks a VM will receive over NBD.
func (v *vm) makeEmptyDisks(ctx context.Context) error {
	for _, dc := range v.cfg.Disks {
		if _, err := os.Stat(dc.Path); err == nil {
			return fmt.Errorf("disk %s: %s already exists on this host", dc.Name, dc.Path)
		}
		if err := os.MkdirAll(filepath.Dir(dc.Path), 0o755); err != nil {
			return err
		}
		v.made = append(v.made, dc.Path)
		if err := disk.Create(ctx, dc.Path, dc.SizeBytes); err != nil {
			return fmt.Errorf("disk %s: %w", dc.Name, err)
		}
	}
	return nil
}

// exportDisks serves the VM's (empty) disks over NBD for the source to
// fill, and returns host:port.
func (v *vm) exportDisks(ctx context.Context, address string, tls bool) (string, error) {
	port, err := freePort(address)
	if err != nil {
		return "", err
	}
	// nbd-server-start takes the legacy socket address form ("data").
	args := map[string]any{"addr": map[string]any{"type": "inet", "data": map[string]any{"host": address, "port": strconv.Itoa(port)}}}
	if tls {
		args["tls-creds"] = tlsObject("server")
	}
	if err := v.command(ctx, "nbd-server-start", args); err != nil {
		return "", err
	}
	for _, dc := range v.cfg.Disks {
		if err := v.command(ctx, "block-export-add", map[string]any{"type": "nbd", "id": "exp-" + dc.Name,
			"node-name": dc.Name, "name": dc.Name, "writable": true}); err != nil {
			return "", err
		}
	}
	return net.JoinHostPort(address, strconv.Itoa(port)), nil
}

// freePort finds a TCP port free on an address (for NBD, which cannot
// report the port it picked).
func freePort(address string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(address, "0"))
	if err != nil {
		return 0, fmt.Errorf("find a free port on %s: %w", address, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (v *vm) query(ctx context.Context, cmd string, out any) error {
	v.mu.Lock()
	q := v.qmp
	v.mu.Unlock()
	if q == nil {
		return fmt.Errorf("%s: vm %s has no running QEMU: %w", cmd, v.cfg.Name, hypervisor.ErrWrongState)
	}
	return q.Execute(ctx, cmd, nil, out)
}

// FinishIncoming runs the received copy.
func (d *Driver) FinishIncoming(ctx context.Context, id string) error {
	v, err := d.get(id)
	if err != nil {
		return err
	}
	if !v.isIncoming() {
		return fmt.Errorf("finish receiving vm %s: it is not being received: %w", v.cfg.Name, hypervisor.ErrWrongState)
	}
	// The state has arrived when QEMU says the incoming migration completed.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var st struct {
			Status string `json:"status"`
		}
		if err := v.query(ctx, "query-migrate", &st); err != nil {
			return fmt.Errorf("finish receiving vm %s: %w", v.cfg.Name, err)
		}
		if st.Status == "completed" {
			break
		}
		if st.Status == "failed" || time.Now().After(deadline) {
			return fmt.Errorf("finish receiving vm %s: the incoming migration is %q", v.cfg.Name, st.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var status struct {
		Status string `json:"status"`
	}
	if err := v.query(ctx, "query-status", &status); err != nil {
		return err
	}
	if status.Status != "running" {
		_ = v.command(ctx, "nbd-server-stop", nil)
		if err := v.run(ctx); err != nil {
			return fmt.Errorf("finish receiving vm %s: %w", v.cfg.Name, err)
		}
	} else if err := v.takeLease(ctx, v.cfg.Lease); err != nil {
		// It started by itself at the end of the transfer, and another
		// copy holds the lease: this one must not run.
		_ = v.command(ctx, "stop", nil)
		return fmt.Errorf("finish receiving vm %s: %w", v.cfg.Name, err)
	}
	v.mu.Lock()
	v.incoming, v.made = false, nil
	runCtx := v.runCtx
	v.mu.Unlock()
	go v.pollGuest(runCtx)
	_ = os.Remove(filepath.Join(v.cfg.Dir, incomingFile))
	v.set(hypervisor.StateOn, "")
	return nil
}

// Discard removes what an interrupted incoming migration left in dir: its
// QEMU process (waiting for a source that will not come) and the disks it
// was receiving.
func (d *Driver) Discard(ctx context.Context, id, dir string) error {
	if pid, alive := findProcess(filepath.Join(dir, "qemu.pid"), smbiosUUID(id)); alive {
		exited := make(chan struct{})
		go watchPID(pid, exited)
		if err := killAndWait(pid, exited); err != nil {
			return err
		}
		d.log.Info("killed the QEMU of an interrupted incoming migration", "vm", id, "pid", pid)
	}
	var made []string
	if b, err := os.ReadFile(filepath.Join(dir, incomingFile)); err == nil && json.Unmarshal(b, &made) == nil {
		for _, p := range made {
			_ = os.Remove(p)
			_ = os.Remove(filepath.Dir(p))
		}
	}
	if run := d.runDirFor(hypervisor.VMConfig{ID: id, Dir: dir}); run != dir {
		_ = os.RemoveAll(run)
	}
	return nil
}

func (v *vm) isIncoming() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.incoming
}

// AbortIncoming stops a copy being received and removes what it made.
func (d *Driver) AbortIncoming(ctx context.Context, id string) error {
	v, err := d.get(id)
	if err != nil {
		return err
	}
	if !v.isIncoming() {
		return fmt.Errorf("abort receiving vm %s: it is not being received: %w", v.cfg.Name, hypervisor.ErrWrongState)
	}
	v.abortIncoming(ctx)
	return nil
}

func (v *vm) abortIncoming(ctx context.Context) {
	v.mu.Lock()
	v.stopping = true
	exited, pid := v.exited, v.pid
	made := v.made
	v.mu.Unlock()
	if exited != nil {
		_ = killAndWait(pid, exited)
	}
	for _, p := range made {
		_ = os.Remove(p)
		_ = os.Remove(filepath.Dir(p))
	}
	v.forget()
}

// forget drops a VM from the driver and removes its runtime files (not
// its disks).
func (v *vm) forget() {
	v.release()
	if v.p.run != v.p.dir {
		_ = os.RemoveAll(v.p.run)
	}
	for _, f := range []string{v.p.stateFile(), v.p.pidFile()} {
		_ = os.Remove(f)
	}
	v.d.mu.Lock()
	if v.d.vms[v.cfg.ID] == v {
		delete(v.d.vms, v.cfg.ID)
	}
	v.d.mu.Unlock()
}

// killAndWait ends a QEMU process and waits until it is gone.
func killAndWait(pid int, exited <-chan struct{}) error {
	if pid > 0 {
		p, err := os.FindProcess(pid)
		if err == nil {
			_ = p.Kill()
		}
	}
	select {
	case <-exited:
		return nil
	case <-time.After(15 * time.Second):
		return fmt.Errorf("QEMU (pid %d) does not die", pid)
	}
}

// MigrateOut starts sending a running VM to a copy on another host.
func (d *Driver) MigrateOut(ctx context.Context, id string, to hypervisor.MigrateTarget) error {
	v, err := d.get(id)
	if err != nil {
		return err
	}
	if err := v.wrongState("migrate", hypervisor.StateOn); err != nil {
		return err
	}
	if err := v.refuseUnfinished(); err != nil {
		return err
	}
	m, err := v.newMigration()
	if err != nil {
		return err
	}
	mctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go func() {
		defer close(m.done)
		defer cancel()
		if err := v.migrateOut(mctx, m, to); err != nil {
			m.fail(err)
			v.cleanupMirrors(context.Background())
			v.log.Warn("migration failed", "vm", v.cfg.Name, "err", err)
		}
	}()
	return nil
}

func (v *vm) newMigration() (*migration, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.mig != nil && !v.mig.finished() {
		return nil, fmt.Errorf("vm %s is already migrating: %w", v.cfg.Name, hypervisor.ErrWrongState)
	}
	v.mig = &migration{start: time.Now(), done: make(chan struct{}), status: hypervisor.MigrationStatus{State: hypervisor.MigrationSetup}}
	return v.mig, nil
}

func (v *vm) migrateOut(ctx context.Context, m *migration, to hypervisor.MigrateTarget) error {
	tls := ""
	if to.TLSHostname != "" {
		tls = "client"
		if err := v.addTLS(ctx, tls); err != nil {
			return err
		}
	}
	// Parameters stay set in QEMU from one migration to the next: set
	// every one, to the default where the request has none.
	extra := map[string]any{"auto-converge": to.AutoConverge, "tls-hostname": to.TLSHostname,
		"max-bandwidth": unlimitedBandwidth, "downtime-limit": defaultDowntimeLimit.Milliseconds()}
	if to.MaxBandwidth > 0 {
		extra["max-bandwidth"] = to.MaxBandwidth
	}
	if to.DowntimeLimit > 0 {
		extra["downtime-limit"] = to.DowntimeLimit.Milliseconds()
	}
	if err := v.setMigrationParams(ctx, to.Multifd, to.Compress, tls, extra); err != nil {
		return err
	}
	if to.NBD != "" {
		if err := v.mirrorTo(ctx, m, to.NBD, to.TLSHostname, to.MaxBandwidth); err != nil {
			return fmt.Errorf("copy the disks: %w", err)
		}
	}
	m.update(func(st *hypervisor.MigrationStatus) { st.State = hypervisor.MigrationActive })
	if err := v.command(ctx, "migrate", map[string]any{"uri": to.URI}); err != nil {
		return err
	}
	for {
		var q qmpMigrate
		if err := v.query(ctx, "query-migrate", &q); err != nil {
			return err
		}
		m.update(func(st *hypervisor.MigrationStatus) { q.into(st) })
		switch q.Status {
		case "completed":
			if to.NBD != "" {
				// The source is paused: finishing the mirrors flushes the
				// last writes to the target.
				if err := v.finishMirrors(ctx, false); err != nil {
					return err
				}
			}
			// The target takes the lease once it is told to run.
			if err := v.dropLease(ctx); err != nil {
				return err
			}
			m.update(func(st *hypervisor.MigrationStatus) {
				st.State = hypervisor.MigrationCompleted
				st.TotalTime = time.Duration(q.TotalTime) * time.Millisecond
			})
			return nil
		case "failed":
			return fmt.Errorf("QEMU: %s", q.ErrorDesc)
		case "cancelled":
			m.update(func(st *hypervisor.MigrationStatus) { st.State = hypervisor.MigrationCancelled })
			return errors.New("cancelled")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
	}
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

// node finds the block node a disk's device uses now (it changes when
// the disk moves).
func (v *vm) node(ctx context.Context, diskName string) (string, error) {
	var blocks []struct {
		QDev     string `json:"qdev"`
		Inserted struct {
			NodeName string `json:"node-name"`
		} `json:"inserted"`
	}
	if err := v.query(ctx, "query-block", &blocks); err != nil {
		return "", err
	}
	for _, b := range blocks {
		if strings.Contains(b.QDev, "/"+diskName+"-dev/") || strings.HasSuffix(b.QDev, "/"+diskName+"-dev") {
			return b.Inserted.NodeName, nil
		}
	}
	return "", fmt.Errorf("disk %s of vm %s has no block node", diskName, v.cfg.Name)
}

type qmpJob struct {
	Device string `json:"device"`
	Len    int64  `json:"len"`
	Offset int64  `json:"offset"`
	Ready  bool   `json:"ready"`
	Status string `json:"status"`
	Error  string `json:"error"`
}

// waitJobs waits until every mirror job of ours is ready, reporting the
// disks' progress.
func (v *vm) waitJobs(ctx context.Context, m *migration, ids []string) error {
	for {
		var jobs []qmpJob
		if err := v.query(ctx, "query-block-jobs", &jobs); err != nil {
			return err
		}
		var total, done int64
		ready := 0
		for _, j := range jobs {
			for _, id := range ids {
				if j.Device != id {
					continue
				}
				if j.Error != "" {
					return fmt.Errorf("disk copy %s: %s", id, j.Error)
				}
				total, done = total+j.Len, done+j.Offset
				if j.Ready {
					ready++
				}
			}
		}
		m.update(func(st *hypervisor.MigrationStatus) { st.DiskTotal, st.DiskDone = total, done })
		if ready == len(ids) {
			return nil
		}
		if len(jobs) == 0 {
			return errors.New("the disk copies stopped")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// mirrorTo copies every disk to the target's NBD exports, at most speed
// bytes/s (0: no limit) like the memory stream, and keeps them in step
// until the memory has moved.
func (v *vm) mirrorTo(ctx context.Context, m *migration, nbd, tlsHostname string, speed int64) error {
	m.update(func(st *hypervisor.MigrationStatus) { st.State = hypervisor.MigrationMirroring })
	host, port, err := net.SplitHostPort(nbd)
	if err != nil {
		return err
	}
	var ids []string
	for _, dc := range v.cfg.Disks {
		src, err := v.node(ctx, dc.Name)
		if err != nil {
			return err
		}
		target := "mig-" + dc.Name
		add := map[string]any{"driver": "nbd", "node-name": target,
			"server": map[string]any{"type": "inet", "host": host, "port": port}, "export": dc.Name}
		if tlsHostname != "" {
			add["tls-creds"] = tlsObject("client")
			add["tls-hostname"] = tlsHostname
		}
		if err := v.command(ctx, "blockdev-add", add); err != nil {
			return err
		}
		mirror := map[string]any{"job-id": target, "device": src, "target": target, "sync": "full", "auto-dismiss": false}
		if speed > 0 {
			mirror["speed"] = speed
		}
		if err := v.command(ctx, "blockdev-mirror", mirror); err != nil {
			return err
		}
		ids = append(ids, target)
	}
	v.mu.Lock()
	v.mirrors = ids
	v.mu.Unlock()
	return v.waitJobs(ctx, m, ids)
}

// finishMirrors ends the mirror jobs: cancelling a ready mirror leaves
// its target in step (force=false) or just stops it (force=true).
func (v *vm) finishMirrors(ctx context.Context, force bool) error {
	v.mu.Lock()
	ids := v.mirrors
	v.mu.Unlock()
	for _, id := range ids {
		_ = v.command(ctx, "block-job-cancel", map[string]any{"device": id, "force": force})
	}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		var jobs []qmpJob
		if err := v.query(ctx, "query-block-jobs", &jobs); err != nil {
			return err
		}
		left := 0
		for _, j := range jobs {
			for _, id := range ids {
				if j.Device == id {
					if j.Status == "concluded" {
						_ = v.command(ctx, "job-dismiss", map[string]any{"id": id})
					} else {
						left++
					}
				}
			}
		}
		if left == 0 {
			for _, id := range ids {
				_ = v.command(ctx, "blockdev-del", map[string]any{"node-name": id})
			}
			v.mu.Lock()
			v.mirrors = nil
			v.mu.Unlock()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("the disk copies did not finish in a minute")
}

// cleanupMirrors stops and removes any mirror of a failed migration.
func (v *vm) cleanupMirrors(ctx context.Context) {
	v.mu.Lock()
	has := len(v.mirrors) > 0 && v.qmp != nil
	v.mu.Unlock()
	if has {
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		_ = v.finishMirrors(cctx, true)
	}
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

// adoptMirrors finds the disk copies of a migration to another host
// (block jobs "mig-DISK") that an earlier agent started.
func (v *vm) adoptMirrors(ctx context.Context) error {
	var jobs []qmpJob
	if err := v.query(ctx, "query-block-jobs", &jobs); err != nil {
		return err
	}
	var ids []string
	for _, j := range jobs {
		if strings.HasPrefix(j.Device, "mig-") {
			ids = append(ids, j.Device)
		}
	}
	v.mu.Lock()
	v.mirrors = ids
	v.mu.Unlock()
	return nil
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
			if err := killAndWait(pid, exited); err != nil {
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

// MoveDisks mirrors a running VM's disks to new files and switches over.
func (d *Driver) MoveDisks(ctx context.Context, id string, moves []hypervisor.DiskMove) error {
	v, err := d.get(id)
	if err != nil {
		return err
	}
	if err := v.wrongState("move the disks of", hypervisor.StateOn, hypervisor.StateSuspended); err != nil {
		return err
	}
	if err := v.refuseUnfinished(); err != nil {
		return err
	}
	m, err := v.newMigration()
	if err != nil {
		return err
	}
	mctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go func() {
		defer close(m.done)
		defer cancel()
		if err := v.moveDisks(mctx, m, moves); err != nil {
			m.fail(err)
			v.log.Warn("disk move failed", "vm", v.cfg.Name, "err", err)
		}
	}()
	return nil
}

func (v *vm) moveDisks(ctx context.Context, m *migration, moves []hypervisor.DiskMove) (err error) {
	m.update(func(st *hypervisor.MigrationStatus) { st.State = hypervisor.MigrationMirroring })
	type job struct {
		mv       hypervisor.DiskMove
		old, tmp string
	}
	var jobs []job
	defer func() {
		if err == nil {
			return
		}
		for _, j := range jobs {
			_ = v.command(context.Background(), "block-job-cancel", map[string]any{"device": "move-" + j.mv.Name, "force": true})
			_ = v.command(context.Background(), "blockdev-del", map[string]any{"node-name": "move-" + j.mv.Name})
			_ = v.command(context.Background(), "blockdev-del", map[string]any{"node-name": "move-" + j.mv.Name + "-file"})
			_ = os.Remove(j.mv.Path)
		}
	}()
	var ids []string
	for _, mv := range moves {
		var dc *hypervisor.DiskConfig
		for i := range v.cfg.Disks {
			if v.cfg.Disks[i].Name == mv.Name {
				dc = &v.cfg.Disks[i]
			}
		}
		if dc == nil {
			return fmt.Errorf("vm %s has no disk %s", v.cfg.Name, mv.Name)
		}
		info, err := disk.Inspect(ctx, dc.Path)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(mv.Path), 0o755); err != nil {
			return err
		}
		if _, err := os.Stat(mv.Path); err == nil {
			return fmt.Errorf("disk %s: %s already exists", mv.Name, mv.Path)
		}
		if err := disk.Create(ctx, mv.Path, info.VirtualSize); err != nil {
			return err
		}
		jobs = append(jobs, job{mv: mv, old: dc.Path})
		src, err := v.node(ctx, mv.Name)
		if err != nil {
			return err
		}
		id := "move-" + mv.Name
		if err := v.command(ctx, "blockdev-add", map[string]any{"driver": "qcow2", "node-name": id, "discard": "unmap",
			"file": map[string]any{"driver": "file", "node-name": id + "-file", "filename": mv.Path, "discard": "unmap"}}); err != nil {
			return err
		}
		if err := v.command(ctx, "blockdev-mirror", map[string]any{"job-id": id, "device": src, "target": id, "sync": "full"}); err != nil {
			return err
		}
		ids = append(ids, id)
	}
	if err := v.waitJobs(ctx, m, ids); err != nil {
		return err
	}
	// Switch the VM to the new files.
	for _, id := range ids {
		if err := v.command(ctx, "block-job-complete", map[string]any{"device": id}); err != nil {
			return err
		}
	}
	for {
		var left []qmpJob
		if err := v.query(ctx, "query-block-jobs", &left); err != nil {
			return err
		}
		busy := false
		for _, j := range left {
			for _, id := range ids {
				busy = busy || j.Device == id
			}
		}
		if !busy {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	v.mu.Lock()
	for _, j := range jobs {
		for i := range v.cfg.Disks {
			if v.cfg.Disks[i].Name == j.mv.Name {
				v.cfg.Disks[i].Path = j.mv.Path
			}
		}
	}
	v.mu.Unlock()
	for _, j := range jobs {
		_ = os.Remove(j.old)
		_ = os.Remove(filepath.Dir(j.old))
	}
	jobs = nil
	m.update(func(st *hypervisor.MigrationStatus) { st.State = hypervisor.MigrationCompleted })
	return nil
}
