package qemu

import (
	"context"
	"net"
	"strings"
	"time"

	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu/blockjob"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu/migration"
)

// node finds the block node a disk's device uses now (it changes when
// the disk moves).
func (v *vm) node(ctx context.Context, diskName string) (string, error) {
	return blockjob.Node(ctx, v, v.cfg.Name, diskName)
}

// mirrorTo copies every disk to the target's NBD exports, at most speed
// bytes/s (0: no limit) like the memory stream, and keeps them in step
// until the memory has moved.
func (v *vm) mirrorTo(ctx context.Context, m *migration.Job, nbd, tlsHostname string, speed int64) error {
	m.Update(func(st *hypervisor.MigrationStatus) { st.State = hypervisor.MigrationMirroring })
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
			add["tls-creds"] = migration.TLSObject("client")
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
	return blockjob.WaitMirrors(ctx, v, ids, m.DiskProgress)
}

// finishMirrors ends the mirror jobs: cancelling a ready mirror leaves
// its target in step (force=false) or just stops it (force=true).
func (v *vm) finishMirrors(ctx context.Context, force bool) error {
	v.mu.Lock()
	ids := v.mirrors
	v.mu.Unlock()
	if err := blockjob.FinishMirrors(ctx, v, ids, force); err != nil {
		return err
	}
	v.mu.Lock()
	v.mirrors = nil
	v.mu.Unlock()
	return nil
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

// adoptMirrors finds the disk copies of a migration to another host
// (block jobs "mig-DISK") that an earlier agent started.
func (v *vm) adoptMirrors(ctx context.Context) error {
	jobs, err := blockjob.Jobs(ctx, v)
	if err != nil {
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
