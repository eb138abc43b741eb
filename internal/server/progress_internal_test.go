package server

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/store"
)

// What a migration reports, in order, as the task shows it: the percent
// only goes up, to 99 once QEMU is done and the switch-over runs.
func TestMigrationPercentGoesOnlyUp(t *testing.T) {
	for name, reports := range map[string][]hypervisor.MigrationStatus{
		"memory only": {
			{State: hypervisor.MigrationSetup},
			{State: hypervisor.MigrationActive, TotalBytes: 1 << 30, TransferredBytes: 200 << 20, RemainingBytes: 800 << 20},
			{State: hypervisor.MigrationActive, TotalBytes: 1 << 30, TransferredBytes: 900 << 20, RemainingBytes: 100 << 20},
			{State: hypervisor.MigrationCompleted, TotalBytes: 1 << 30, TransferredBytes: 1 << 30},
		},
		"disks, then memory": {
			{State: hypervisor.MigrationSetup},
			{State: hypervisor.MigrationMirroring, DiskTotal: 4 << 30, DiskDone: 1 << 30},
			{State: hypervisor.MigrationMirroring, DiskTotal: 4 << 30, DiskDone: 4 << 30},
			{State: hypervisor.MigrationActive, DiskTotal: 4 << 30, DiskDone: 4 << 30, TotalBytes: 1 << 30, TransferredBytes: 512 << 20, RemainingBytes: 512 << 20},
			{State: hypervisor.MigrationCompleted, DiskTotal: 4 << 30, DiskDone: 4 << 30, TotalBytes: 1 << 30, TransferredBytes: 1 << 30},
		},
		"disks alone": {
			{State: hypervisor.MigrationMirroring, DiskTotal: 4 << 30, DiskDone: 3 << 30},
			{State: hypervisor.MigrationCompleted, DiskTotal: 4 << 30, DiskDone: 4 << 30},
		},
	} {
		last := 0
		for i, st := range reports {
			pct := migrationPercent(st)
			if pct < last || pct > 99 {
				t.Errorf("%s: report %d (%s) gives %d%% after %d%%", name, i, st.State, pct, last)
			}
			last = pct
		}
		if last != 99 {
			t.Errorf("%s: a completed migration shows %d%%", name, last)
		}
	}
}

// A task's recorded percent never goes back, whatever a step reports (a
// pass of a migration that finds more dirty memory, a resumed task that
// counts again from its start).
func TestTaskProgressNeverGoesBack(t *testing.T) {
	dir := t.TempDir()
	s, err := New(Config{DataDir: filepath.Join(dir, "server"), Listen: "127.0.0.1:0", Name: "test",
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	deadline := time.Now().Add(30 * time.Second)
	for !s.isLeader() {
		if time.Now().After(deadline) {
			t.Fatal("the server did not become the leader")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A running task the runner does not know (it picks up queued ones).
	task := &api.Task{Metadata: api.ObjectMeta{ID: store.NewID()}, Op: "test.progress", State: api.TaskRunning,
		Target: api.TaskTarget{Kind: api.KindVM, ID: "x", Name: "x"}}
	rev, err := s.store.Txn().Create(task).Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	task.Metadata.Revision = rev
	run := &taskRun{s: s, task: task, log: s.log, leader: ctx}
	run.announce(ctx, 40, "memory 400 MiB sent, pass 1")
	run.announce(ctx, 20, "memory 600 MiB sent, pass 2")
	o, err := s.store.Get(ctx, api.KindTask, task.Metadata.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got := o.(*api.Task); got.Progress != 40 || got.Message != "memory 600 MiB sent, pass 2" {
		t.Fatalf("after 40%% then 20%%: %d%% %q", got.Progress, got.Message)
	}
}
