package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/vdc-project/vdc/internal/disk"
	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu/blockjob"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu/proc"
)

// A merge writes its intent into the VM's directory before it touches
// anything, and the phase it reached, so that one interrupted (agent or
// QEMU killed) is finished or redone, never guessed at:
//
//   - merging: Top's data is being copied into Base. Top, with Base
//     under it, still holds the whole disk: redoing the copy is safe.
//   - pivoting: (active merges) the VM is paused and QEMU is switching the
//     disk from Top to Base. Nothing wrote since the pause, so Top over
//     Base and Base alone hold the same data.
//   - pivoted: the disk uses Base; Top is stale and only left to remove.
//
// A VM with an unfinished merge does not start: its disk file depends on
// the phase, and the merge call that finishes it says which.
const (
	phaseMerging  = "merging"
	phasePivoting = "pivoting"
	phasePivoted  = "pivoted"
)

type mergeJournal struct {
	hypervisor.DiskMerge
	Phase string `json:"phase"`
	// Resume says the merge paused a running guest to switch files: one
	// interrupted then must run it again.
	Resume bool `json:"resume,omitempty"`
}

func journalPath(dir, diskName string) string {
	return filepath.Join(dir, "merge-"+diskName+".json")
}

func (v vm) writeJournal(j mergeJournal) error {
	b, _ := json.Marshal(j)
	return proc.WriteFile(journalPath(v.Dir(), j.Disk), b)
}

// UnfinishedMerge names a disk of the VM in dir whose merge was
// interrupted, if any.
func UnfinishedMerge(dir string) string {
	ms, _ := filepath.Glob(filepath.Join(dir, "merge-*.json"))
	for _, m := range ms {
		b, err := os.ReadFile(m)
		var j mergeJournal
		if err == nil && json.Unmarshal(b, &j) == nil {
			return fmt.Sprintf("disk %s (%s into %s, %s)", j.Disk, filepath.Base(j.Top), filepath.Base(j.Base), j.Phase)
		}
	}
	return ""
}

// Merge merges Top into Base: with QMP's block-commit while the VM runs
// (an active commit when Top is the disk's active file), with qemu-img
// when it does not or Top is on another branch. speed caps a live merge
// (bytes/s; 0: no cap).
func Merge(ctx context.Context, target VM, m hypervisor.DiskMerge, speed int64) error {
	v := vm{VM: target, speed: speed}
	if err := v.mergeDisk(ctx, m); err != nil {
		return fmt.Errorf("merge %s into %s (disk %s of vm %s): %w", filepath.Base(m.Top), filepath.Base(m.Base), m.Disk, v.Name(), err)
	}
	return nil
}

func (v vm) mergeDisk(ctx context.Context, m hypervisor.DiskMerge) error {
	var j mergeJournal
	if b, err := os.ReadFile(journalPath(v.Dir(), m.Disk)); err == nil && json.Unmarshal(b, &j) == nil && j.Top == m.Top && j.Base == m.Base {
		v.Log().Info("finishing an interrupted disk merge", "disk", m.Disk, "phase", j.Phase)
	} else {
		j = mergeJournal{DiskMerge: m, Phase: phaseMerging}
	}
	defer v.resumeAfter(ctx, j)
	if _, err := os.Stat(m.Top); errors.Is(err, os.ErrNotExist) {
		// Done before: only the bookkeeping may be left.
		return v.finishMerge(ctx, m)
	}
	if _, err := os.Stat(m.Base); err != nil {
		return fmt.Errorf("base file: %w", err)
	}
	if err := v.writeJournal(j); err != nil {
		return err
	}
	running := v.powerState() != hypervisor.StateOff && v.HasQEMU()
	switch {
	case j.Phase == phasePivoted:
	case running && m.Active:
		if err := v.activeCommit(ctx, m, j); err != nil {
			return err
		}
	case running && m.Live:
		if err := v.liveCommit(ctx, m); err != nil {
			return err
		}
	case m.Active && v.powerState() != hypervisor.StateOff:
		return fmt.Errorf("the VM runs but its QEMU cannot be reached: %w", hypervisor.ErrWrongState)
	default:
		if j.Phase == phasePivoting {
			// QEMU died while switching: Top over Base is the disk.
			j.Phase = phaseMerging
		}
		if err := disk.Commit(ctx, m.Top, m.Base); err != nil {
			return err
		}
	}
	return v.finishMerge(ctx, m)
}

// finishMerge points Top's children at Base, records Base as the disk's
// file when Top was, and removes Top and the journal.
func (v vm) finishMerge(ctx context.Context, m hypervisor.DiskMerge) error {
	for _, c := range m.Children {
		info, err := disk.Inspect(ctx, c)
		if err != nil {
			return err
		}
		if info.BackingFile == m.Base {
			continue // QEMU did it, or an earlier try
		}
		if err := disk.SetBacking(ctx, c, m.Base, "qcow2"); err != nil {
			return err
		}
	}
	if m.Active {
		v.SetDiskPath(m.Disk, m.Base)
	}
	if err := os.Remove(m.Top); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Remove(journalPath(v.Dir(), m.Disk)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if st := v.State(); strings.HasPrefix(st.Reason, "unfinished disk merge") && UnfinishedMerge(v.Dir()) == "" {
		v.SetPower(st.Power, "")
	}
	return nil
}

func commitJob(diskName string) string { return "commit-" + diskName }

// activeCommit merges the disk's active file into its base while the
// guest writes, then switches the disk to the base with the guest paused
// (see the phases above).
func (v vm) activeCommit(ctx context.Context, m hypervisor.DiskMerge, j mergeJournal) error {
	id := commitJob(m.Disk)
	root, cur, err := v.startActiveCommit(ctx, m, id)
	if err != nil || cur == m.Base {
		return err
	}
	if err := blockjob.WaitReady(ctx, v, id); err != nil {
		return err
	}
	return v.pivot(ctx, m, j, id, root, cur)
}

// startActiveCommit starts the commit job id unless it runs already; it
// returns the disk's root node and the file it uses (Base when the disk
// switched already: nothing is left to do).
func (v vm) startActiveCommit(ctx context.Context, m hypervisor.DiskMerge, id string) (root, cur string, err error) {
	root, err = v.node(ctx, m.Disk)
	if err != nil {
		return "", "", err
	}
	cur, err = blockjob.FileOfNode(ctx, v, root)
	if err != nil {
		return "", "", err
	}
	if cur == m.Base {
		// Switched before the agent that asked could record it.
		_ = v.command(ctx, "job-dismiss", map[string]any{"id": id})
		return root, cur, nil
	}
	job, err := blockjob.Find(ctx, v, id)
	if err != nil {
		return "", "", err
	}
	if job == nil {
		base, err := blockjob.NodeOfFile(ctx, v, m.Base)
		if err != nil {
			return "", "", err
		}
		if err := v.command(ctx, "block-commit", v.withSpeed(map[string]any{"job-id": id, "device": root, "base-node": base,
			"auto-dismiss": false})); err != nil {
			return "", "", err
		}
	}
	return root, cur, nil
}

// pivot completes the ready commit job with the guest paused, so that the
// disk switches from Top (cur, its file now) to Base, journalling each
// phase.
func (v vm) pivot(ctx context.Context, m hypervisor.DiskMerge, j mergeJournal, id, root, cur string) error {
	defer v.Hold()()
	power := v.powerState()
	j.Phase, j.Resume = phasePivoting, power == hypervisor.StateOn
	if err := v.writeJournal(j); err != nil {
		return err
	}
	if power == hypervisor.StateOn {
		if err := v.command(ctx, "stop", nil); err != nil {
			return err
		}
	}
	resume := func() {
		if power == hypervisor.StateOn {
			if err := v.command(context.WithoutCancel(ctx), "cont", nil); err != nil {
				v.Log().Error("cannot resume the guest after a disk merge", "err", err)
			}
		}
	}
	if err := v.command(ctx, "job-complete", map[string]any{"id": id}); err != nil {
		resume()
		return err
	}
	if err := blockjob.Wait(ctx, v, id, nil); err != nil {
		resume()
		return err
	}
	blockjob.DropOrphan(v, root)
	var err error
	if root, err = v.node(ctx, m.Disk); err == nil {
		cur, err = blockjob.FileOfNode(ctx, v, root)
	}
	if err != nil || cur != m.Base {
		resume()
		return fmt.Errorf("the disk did not switch to %s (it uses %s): %v", m.Base, cur, err)
	}
	v.SetDiskPath(m.Disk, m.Base)
	j.Phase = phasePivoted
	if err := v.writeJournal(j); err != nil {
		resume()
		return err
	}
	resume()
	return nil
}

// liveCommit merges a file deeper in the running chain into its base;
// QEMU points the file above it at the base when done.
func (v vm) liveCommit(ctx context.Context, m hypervisor.DiskMerge) error {
	id := commitJob(m.Disk)
	job, err := blockjob.Find(ctx, v, id)
	if err != nil {
		return err
	}
	if job == nil {
		top, err := blockjob.NodeOfFile(ctx, v, m.Top)
		if err != nil {
			if done, _ := v.childrenOn(ctx, m); done {
				return nil
			}
			return err
		}
		base, err := blockjob.NodeOfFile(ctx, v, m.Base)
		if err != nil {
			return err
		}
		root, err := v.node(ctx, m.Disk)
		if err != nil {
			return err
		}
		if err := v.command(ctx, "block-commit", v.withSpeed(map[string]any{"job-id": id, "device": root, "top-node": top, "base-node": base,
			"backing-file": m.Base, "auto-dismiss": false})); err != nil {
			return err
		}
		defer blockjob.DropOrphan(v, top)
	}
	return blockjob.Wait(ctx, v, id, nil)
}

// childrenOn says whether every child of Top already points at Base.
func (v vm) childrenOn(ctx context.Context, m hypervisor.DiskMerge) (bool, error) {
	for _, c := range m.Children {
		info, err := disk.Inspect(ctx, c)
		if err != nil {
			return false, err
		}
		if info.BackingFile != m.Base {
			return false, nil
		}
	}
	return true, nil
}

// resumeAfter runs a guest again that an interrupted merge left paused
// in its switch-over (the agent died between pausing and resuming it).
func (v vm) resumeAfter(ctx context.Context, j mergeJournal) {
	if !j.Resume || (j.Phase != phasePivoting && j.Phase != phasePivoted) || !v.HasQEMU() {
		return
	}
	var st struct {
		Status string `json:"status"`
	}
	if err := v.query(ctx, "query-status", &st); err != nil || st.Status != "paused" {
		return
	}
	if err := v.command(ctx, "cont", nil); err == nil {
		v.Log().Info("resumed a guest an interrupted disk merge had paused", "disk", j.Disk)
		v.SetPower(hypervisor.StateOn, "")
	}
}

// withSpeed caps a block job at the driver's merge bandwidth.
func (v vm) withSpeed(args map[string]any) map[string]any {
	if v.speed > 0 {
		args["speed"] = v.speed
	}
	return args
}
