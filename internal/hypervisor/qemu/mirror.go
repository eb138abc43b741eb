package qemu

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/vdc-project/vdc/internal/hypervisor"
)

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
