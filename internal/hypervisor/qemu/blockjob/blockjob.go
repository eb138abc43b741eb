// Package blockjob is QEMU's block layer as the driver uses it over QMP:
// finding the node a disk's device reads (and which file a node reads),
// naming and deleting the nodes the driver adds, and following block jobs
// (mirror, commit, backup) until they are ready or concluded. Every
// function takes the Monitor of one running QEMU and keeps no state, so
// that the operations built on them (snapshots, merges, copies, disk
// moves, migrations with their disks) share one tested way of doing each
// step.
package blockjob

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Monitor sends QMP commands to one running QEMU (the driver's vm: it
// says so when the VM has no running QEMU).
type Monitor interface {
	Execute(ctx context.Context, cmd string, args, out any) error
}

// Node finds the block node the device of disk diskName of vm uses now
// (it changes when the disk moves).
func Node(ctx context.Context, m Monitor, vm, diskName string) (string, error) {
	var blocks []struct {
		QDev     string `json:"qdev"`
		Inserted struct {
			NodeName string `json:"node-name"`
		} `json:"inserted"`
	}
	if err := m.Execute(ctx, "query-block", nil, &blocks); err != nil {
		return "", err
	}
	for _, b := range blocks {
		if strings.Contains(b.QDev, "/"+diskName+"-dev/") || strings.HasSuffix(b.QDev, "/"+diskName+"-dev") {
			return b.Inserted.NodeName, nil
		}
	}
	return "", fmt.Errorf("disk %s of vm %s has no block node", diskName, vm)
}

// blockNode is a node of query-named-block-nodes.
type blockNode struct {
	NodeName string `json:"node-name"`
	Drv      string `json:"drv"`
	File     string `json:"file"`
}

// NodeOfFile finds the format node QEMU has open for a disk file.
func NodeOfFile(ctx context.Context, m Monitor, path string) (string, error) {
	var nodes []blockNode
	if err := m.Execute(ctx, "query-named-block-nodes", map[string]any{"flat": true}, &nodes); err != nil {
		return "", err
	}
	for _, n := range nodes {
		if n.File == path && n.Drv != "file" {
			return n.NodeName, nil
		}
	}
	return "", fmt.Errorf("QEMU does not have %s open", path)
}

// FileOfNode is the file a format node reads.
func FileOfNode(ctx context.Context, m Monitor, node string) (string, error) {
	var nodes []blockNode
	if err := m.Execute(ctx, "query-named-block-nodes", map[string]any{"flat": true}, &nodes); err != nil {
		return "", err
	}
	for _, n := range nodes {
		if n.NodeName == node {
			return n.File, nil
		}
	}
	return "", fmt.Errorf("QEMU has no node %s", node)
}

// NodeName names the QMP node of a disk file from its file name (its
// protocol node is the same name with "-file").
func NodeName(path string) string {
	base := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	return "n-" + strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '-'
	}, base)
}

// Drop deletes a node the driver added and its protocol node (node-file),
// ignoring errors: it undoes a step that may not have happened.
func Drop(m Monitor, node string) {
	ctx := context.Background()
	_ = m.Execute(ctx, "blockdev-del", map[string]any{"node-name": node}, nil)
	_ = m.Execute(ctx, "blockdev-del", map[string]any{"node-name": node + "-file"}, nil)
}

// DropOrphan deletes a node a commit took out of the disk's chain: nodes
// we named (the command line's, blockdev-add's) outlive it otherwise and
// keep holding their backing node, which blocks the next snapshot.
func DropOrphan(m Monitor, node string) {
	if strings.HasPrefix(node, "#") {
		return // QEMU's own: it went with the chain
	}
	Drop(m, node)
}

// Job is query-block-jobs' view of a block job.
type Job struct {
	Device string `json:"device"`
	Len    int64  `json:"len"`
	Offset int64  `json:"offset"`
	Ready  bool   `json:"ready"`
	Status string `json:"status"`
	Error  string `json:"error"`
}

// Jobs lists the block jobs QEMU runs.
func Jobs(ctx context.Context, m Monitor) ([]Job, error) {
	var jobs []Job
	err := m.Execute(ctx, "query-block-jobs", nil, &jobs)
	return jobs, err
}

// JobInfo is query-jobs' view of a job.
type JobInfo struct {
	ID              string `json:"id"`
	Status          string `json:"status"`
	CurrentProgress int64  `json:"current-progress"`
	TotalProgress   int64  `json:"total-progress"`
	Error           string `json:"error"`
}

// Find returns our job of that ID in QEMU, if it has one (nil if not).
func Find(ctx context.Context, m Monitor, id string) (*JobInfo, error) {
	var jobs []JobInfo
	if err := m.Execute(ctx, "query-jobs", nil, &jobs); err != nil {
		return nil, err
	}
	if i := slices.IndexFunc(jobs, func(j JobInfo) bool { return j.ID == id }); i >= 0 {
		return &jobs[i], nil
	}
	return nil, nil
}

// Wait waits for a block job started with auto-dismiss off to conclude,
// and dismisses it; each, if not nil, sees its progress on every poll.
// A cancelled ctx cancels the job.
func Wait(ctx context.Context, m Monitor, id string, each func(Job)) error {
	for {
		var jobs []JobInfo
		if err := m.Execute(ctx, "query-jobs", nil, &jobs); err != nil {
			return err
		}
		i := slices.IndexFunc(jobs, func(j JobInfo) bool { return j.ID == id })
		if i < 0 {
			return fmt.Errorf("block job %s is gone", id)
		}
		j := jobs[i]
		if each != nil {
			each(Job{Device: id, Len: j.TotalProgress, Offset: j.CurrentProgress})
		}
		if j.Status == "concluded" {
			_ = m.Execute(context.Background(), "job-dismiss", map[string]any{"id": id}, nil)
			if j.Error != "" {
				return fmt.Errorf("block job %s: %s", id, j.Error)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			_ = m.Execute(context.Background(), "job-cancel", map[string]any{"id": id}, nil)
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// WaitReady waits until a commit job is ready: its base holds all of its
// top and follows the guest's writes.
func WaitReady(ctx context.Context, m Monitor, id string) error {
	for {
		job, err := Find(ctx, m, id)
		if err != nil {
			return err
		}
		if job == nil {
			return fmt.Errorf("the merge job ended before it was ready")
		}
		if job.Status == "ready" {
			return nil
		}
		if job.Status == "concluded" {
			_ = m.Execute(context.Background(), "job-dismiss", map[string]any{"id": id}, nil)
			return fmt.Errorf("the merge job failed: %s", job.Error)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// WaitMirrors waits until every mirror job of ids is ready (its target in
// step with its disk), telling progress the bytes they copy and have
// copied on each poll.
func WaitMirrors(ctx context.Context, m Monitor, ids []string, progress func(total, done int64)) error {
	for {
		jobs, err := Jobs(ctx, m)
		if err != nil {
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
		progress(total, done)
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

// FinishMirrors ends the mirror jobs ids and deletes their target nodes:
// cancelling a ready mirror leaves its target in step (force=false) or
// just stops it (force=true).
func FinishMirrors(ctx context.Context, m Monitor, ids []string, force bool) error {
	for _, id := range ids {
		_ = m.Execute(ctx, "block-job-cancel", map[string]any{"device": id, "force": force}, nil)
	}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		jobs, err := Jobs(ctx, m)
		if err != nil {
			return err
		}
		left := 0
		for _, j := range jobs {
			for _, id := range ids {
				if j.Device == id {
					if j.Status == "concluded" {
						_ = m.Execute(ctx, "job-dismiss", map[string]any{"id": id}, nil)
					} else {
						left++
					}
				}
			}
		}
		if left == 0 {
			for _, id := range ids {
				_ = m.Execute(ctx, "blockdev-del", map[string]any{"node-name": id}, nil)
			}
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("the disk copies did not finish in a minute")
}

// CompleteMirrors switches the disks of the ready mirror jobs ids to their
// targets and waits until the jobs are gone.
func CompleteMirrors(ctx context.Context, m Monitor, ids []string) error {
	for _, id := range ids {
		if err := m.Execute(ctx, "block-job-complete", map[string]any{"device": id}, nil); err != nil {
			return err
		}
	}
	for {
		left, err := Jobs(ctx, m)
		if err != nil {
			return err
		}
		busy := false
		for _, j := range left {
			for _, id := range ids {
				busy = busy || j.Device == id
			}
		}
		if !busy {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
}
