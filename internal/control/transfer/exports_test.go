package transfer_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/store"
)

// vm stores a ready VM on the world's host with one disk.
func (w *world) vm(t *testing.T, name, power string) *api.VM {
	vm := &api.VM{Metadata: api.ObjectMeta{ID: store.NewID(), Name: name},
		Spec: api.VMSpec{Cluster: api.Ref{ID: w.cl.Metadata.ID}, Host: api.Ref{ID: w.h.Metadata.ID}, CPUs: 1, MemoryBytes: 256 << 20,
			Disks: []api.VMDisk{{Name: "disk0", Datastore: api.Ref{ID: w.ds.Metadata.ID}, Path: name + "/disk0.qcow2", SizeBytes: 1 << 30}}},
		Status: api.VMStatus{Phase: api.PhaseReady, PowerState: power}}
	w.create(t, vm)
	return vm
}

// An export of a VM that runs is refused, saying why, and queues nothing;
// one that was off when asked for, and runs by the time its task starts,
// fails without writing anything.
func TestExportOfARunningVMIsRefused(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.vm(t, "web", api.PowerOn)
	_, err := w.svc.Export(ctx, "web", api.ExportRequest{})
	if !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "vm web is on: export it while it is off (its disks must not change)") {
		t.Fatalf("export of a running VM: %v", err)
	}
	if tasks := state.List[*api.Task](w.st, nil); len(tasks) != 0 {
		t.Errorf("a refused export queued a task: %+v", tasks)
	}

	db := w.vm(t, "db", api.PowerOff)
	task, err := w.svc.Export(ctx, "db", api.ExportRequest{Format: api.ImportOVF, Version: "2.0"})
	if err != nil {
		t.Fatalf("export of a VM that is off: %v", err)
	}
	err = state.Update(ctx, w.st, nil, db.Metadata.ID, func(vm *api.VM) error {
		vm.Status.PowerState = api.PowerOn
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.st.Cache.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	w.start(t)
	done := w.wait(t, task.Metadata.ID)
	if done.State != api.TaskFailed || !strings.Contains(done.Error.Message, "vm db is on: export it while it is off") {
		t.Fatalf("export task of a VM powered on since: %s %+v", done.State, done.Error)
	}
	if calls := w.calls("StagingExport"); len(calls) != 0 {
		t.Errorf("the export wrote files of a running VM: %+v", calls)
	}
}

// Bad export requests are refused before the VM is looked at.
func TestExportBadRequests(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	for req, want := range map[api.ExportRequest]string{
		{Format: "zip"}:   `export format must be ova or ovf, got "zip"`,
		{Version: "3.0"}:  `OVF version must be 1.0 or 2.0, got "3.0"`,
		{Format: "ovf"}:   `vm "nope" not found`,
		{Version: "2.0"}:  `vm "nope" not found`,
		{Format: "other"}: `export format must be ova or ovf`,
	} {
		if _, err := w.svc.Export(ctx, "nope", req); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("export %+v: %v, want %q", req, err, want)
		}
	}
}
