// Package hoststest is a stand-in for the hosts' agents in the control
// packages' unit tests: Fake implements hosts.Client, records every call
// and answers with what a test set in its On map (zero values and no error
// otherwise).
package hoststest

import (
	"context"
	"io"
	"sync"

	"github.com/coder/websocket"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/agent"
	"github.com/vdc-project/vdc/internal/control/hosts"
	"github.com/vdc-project/vdc/internal/hypervisor"
)

// Call is one call the fake took.
type Call struct {
	Method string
	Host   string // the target host's name ("" for Forget)
	VM     string // the VM ID the call was about, if any
	Args   []any  // the arguments after the target
}

// Fake records calls; On[method], when set, answers them: it gets the
// call and returns the method's results as a []any (nil for zero values
// and no error), or just an error.
type Fake struct {
	mu    sync.Mutex
	calls []Call
	On    map[string]func(c Call) ([]any, error)
}

var _ hosts.Client = (*Fake)(nil)

// New returns a fake that answers every call with zero values.
func New() *Fake { return &Fake{On: map[string]func(Call) ([]any, error){}} }

// Calls returns the calls so far, in order.
func (f *Fake) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Call(nil), f.calls...)
}

// Methods returns the names of the calls so far, in order.
func (f *Fake) Methods() []string {
	var out []string
	for _, c := range f.Calls() {
		out = append(out, c.Method)
	}
	return out
}

func (f *Fake) call(method string, h hosts.Target, vm string, args ...any) ([]any, error) {
	c := Call{Method: method, Host: h.Name, VM: vm, Args: args}
	f.mu.Lock()
	f.calls = append(f.calls, c)
	fn := f.On[method]
	f.mu.Unlock()
	if fn == nil {
		return nil, nil
	}
	return fn(c)
}

// result returns the i-th answer as T (its zero value when absent).
func result[T any](res []any, i int) T {
	var zero T
	if i < len(res) && res[i] != nil {
		return res[i].(T)
	}
	return zero
}

// Forget records the call.
func (f *Fake) Forget(hostID string) { _, _ = f.call("Forget", hosts.Target{ID: hostID}, "") }

// Define records the call.
func (f *Fake) Define(ctx context.Context, h hosts.Target, cfg hypervisor.VMConfig) (api.AgentVMState, error) {
	res, err := f.call("Define", h, cfg.ID, cfg)
	return result[api.AgentVMState](res, 0), err
}

// Undefine records the call.
func (f *Fake) Undefine(ctx context.Context, h hosts.Target, id string, force bool) error {
	_, err := f.call("Undefine", h, id, id, force)
	return err
}

// Power records the call.
func (f *Fake) Power(ctx context.Context, h hosts.Target, id string, req api.PowerRequest) (api.AgentVMState, error) {
	res, err := f.call("Power", h, id, id, req)
	return result[api.AgentVMState](res, 0), err
}

// VM records the call.
func (f *Fake) VM(ctx context.Context, h hosts.Target, vmID string) (agent.VMInfo, error) {
	res, err := f.call("VM", h, vmID, vmID)
	return result[agent.VMInfo](res, 0), err
}

// HotAdd records the call.
func (f *Fake) HotAdd(ctx context.Context, h hosts.Target, vmID string, req agent.HotAddRequest) (hypervisor.HotAddResult, error) {
	res, err := f.call("HotAdd", h, vmID, vmID, req)
	return result[hypervisor.HotAddResult](res, 0), err
}

// Exec records the call.
func (f *Fake) Exec(ctx context.Context, h hosts.Target, vmID string, req agent.ExecRequest) (hypervisor.ExecResult, error) {
	res, err := f.call("Exec", h, vmID, vmID, req)
	return result[hypervisor.ExecResult](res, 0), err
}

// ConsoleLog records the call.
func (f *Fake) ConsoleLog(ctx context.Context, h hosts.Target, vmID string, bytes int) ([]byte, error) {
	res, err := f.call("ConsoleLog", h, vmID, vmID, bytes)
	return result[[]byte](res, 0), err
}

// Console records the call.
func (f *Fake) Console(ctx context.Context, h hosts.Target, vmID string) (*websocket.Conn, error) {
	res, err := f.call("Console", h, vmID, vmID)
	return result[*websocket.Conn](res, 0), err
}

// VNC records the call.
func (f *Fake) VNC(ctx context.Context, h hosts.Target, vmID string) (*websocket.Conn, error) {
	res, err := f.call("VNC", h, vmID, vmID)
	return result[*websocket.Conn](res, 0), err
}

// Incoming records the call.
func (f *Fake) Incoming(ctx context.Context, h hosts.Target, req agent.IncomingRequest) (hypervisor.Incoming, error) {
	res, err := f.call("Incoming", h, req.Config.ID, req)
	return result[hypervisor.Incoming](res, 0), err
}

// FinishIncoming records the call.
func (f *Fake) FinishIncoming(ctx context.Context, h hosts.Target, vmID string) (api.AgentVMState, error) {
	res, err := f.call("FinishIncoming", h, vmID, vmID)
	return result[api.AgentVMState](res, 0), err
}

// AbortIncoming records the call.
func (f *Fake) AbortIncoming(ctx context.Context, h hosts.Target, vmID string) error {
	_, err := f.call("AbortIncoming", h, vmID, vmID)
	return err
}

// MigrateOut records the call.
func (f *Fake) MigrateOut(ctx context.Context, h hosts.Target, vmID string, to hypervisor.MigrateTarget) error {
	_, err := f.call("MigrateOut", h, vmID, vmID, to)
	return err
}

// CancelMigration records the call.
func (f *Fake) CancelMigration(ctx context.Context, h hosts.Target, vmID string) error {
	_, err := f.call("CancelMigration", h, vmID, vmID)
	return err
}

// Release records the call.
func (f *Fake) Release(ctx context.Context, h hosts.Target, vmID string, removeDisks bool) error {
	_, err := f.call("Release", h, vmID, vmID, removeDisks)
	return err
}

// MoveDisks records the call.
func (f *Fake) MoveDisks(ctx context.Context, h hosts.Target, vmID string, moves []hypervisor.DiskMove) error {
	_, err := f.call("MoveDisks", h, vmID, vmID, moves)
	return err
}

// Snapshot records the call.
func (f *Fake) Snapshot(ctx context.Context, h hosts.Target, vmID string, req hypervisor.SnapshotRequest) (hypervisor.SnapshotResult, error) {
	res, err := f.call("Snapshot", h, vmID, vmID, req)
	return result[hypervisor.SnapshotResult](res, 0), err
}

// Revert records the call.
func (f *Fake) Revert(ctx context.Context, h hosts.Target, vmID string, req hypervisor.RevertRequest) (api.AgentVMState, error) {
	res, err := f.call("Revert", h, vmID, vmID, req)
	return result[api.AgentVMState](res, 0), err
}

// MergeDisk records the call.
func (f *Fake) MergeDisk(ctx context.Context, h hosts.Target, vmID string, m hypervisor.DiskMerge) error {
	_, err := f.call("MergeDisk", h, vmID, vmID, m)
	return err
}

// AddDisk records the call.
func (f *Fake) AddDisk(ctx context.Context, h hosts.Target, vmID string, d hypervisor.DiskConfig) (api.AgentVMState, error) {
	res, err := f.call("AddDisk", h, vmID, vmID, d)
	return result[api.AgentVMState](res, 0), err
}

// ResizeDisk records the call.
func (f *Fake) ResizeDisk(ctx context.Context, h hosts.Target, vmID string, disk string, size int64) error {
	_, err := f.call("ResizeDisk", h, vmID, vmID, disk, size)
	return err
}

// RemoveDisk records the call.
func (f *Fake) RemoveDisk(ctx context.Context, h hosts.Target, vmID string, disk string) error {
	_, err := f.call("RemoveDisk", h, vmID, vmID, disk)
	return err
}

// AddNIC records the call.
func (f *Fake) AddNIC(ctx context.Context, h hosts.Target, vmID string, n hypervisor.NICConfig) (api.AgentVMState, error) {
	res, err := f.call("AddNIC", h, vmID, vmID, n)
	return result[api.AgentVMState](res, 0), err
}

// UpdateNIC records the call.
func (f *Fake) UpdateNIC(ctx context.Context, h hosts.Target, vmID string, n hypervisor.NICConfig) (api.AgentVMState, error) {
	res, err := f.call("UpdateNIC", h, vmID, vmID, n)
	return result[api.AgentVMState](res, 0), err
}

// RemoveNIC records the call.
func (f *Fake) RemoveNIC(ctx context.Context, h hosts.Target, vmID string, nic string) (api.AgentVMState, error) {
	res, err := f.call("RemoveNIC", h, vmID, vmID, nic)
	return result[api.AgentVMState](res, 0), err
}

// RemoveFiles records the call.
func (f *Fake) RemoveFiles(ctx context.Context, h hosts.Target, paths []string) error {
	_, err := f.call("RemoveFiles", h, "", paths)
	return err
}

// CopyDisk records the call.
func (f *Fake) CopyDisk(ctx context.Context, h hosts.Target, cp hypervisor.DiskCopy) (agent.Job, error) {
	res, err := f.call("CopyDisk", h, "", cp)
	return result[agent.Job](res, 0), err
}

// PutFile records the call.
func (f *Fake) PutFile(ctx context.Context, h hosts.Target, datastoreID string, path string, body io.Reader, size int64, inspect bool) (agent.FileResult, error) {
	res, err := f.call("PutFile", h, "", datastoreID, path, body, size, inspect)
	return result[agent.FileResult](res, 0), err
}

// DeleteFile records the call.
func (f *Fake) DeleteFile(ctx context.Context, h hosts.Target, datastoreID string, path string) error {
	_, err := f.call("DeleteFile", h, "", datastoreID, path)
	return err
}

// Import records the call.
func (f *Fake) Import(ctx context.Context, h hosts.Target, datastoreID string, req agent.ImportRequest) (agent.Job, error) {
	res, err := f.call("Import", h, "", datastoreID, req)
	return result[agent.Job](res, 0), err
}

// Job records the call.
func (f *Fake) Job(ctx context.Context, h hosts.Target, id string) (agent.Job, error) {
	res, err := f.call("Job", h, "", id)
	return result[agent.Job](res, 0), err
}

// StagingPut records the call.
func (f *Fake) StagingPut(ctx context.Context, h hosts.Target, ds string, id string, name string, body io.Reader, size int64) (agent.StagingFile, error) {
	res, err := f.call("StagingPut", h, "", ds, id, name, body, size)
	return result[agent.StagingFile](res, 0), err
}

// StagingIndex records the call.
func (f *Fake) StagingIndex(ctx context.Context, h hosts.Target, ds string, id string) (*agent.StagedPackage, error) {
	res, err := f.call("StagingIndex", h, "", ds, id)
	return result[*agent.StagedPackage](res, 0), err
}

// StagingFetch records the call.
func (f *Fake) StagingFetch(ctx context.Context, h hosts.Target, ds string, id string, req agent.FetchRequest, progress func(float64, string)) (*agent.StagedPackage, error) {
	res, err := f.call("StagingFetch", h, "", ds, id, req, progress)
	return result[*agent.StagedPackage](res, 0), err
}

// StagingConvert records the call.
func (f *Fake) StagingConvert(ctx context.Context, h hosts.Target, ds string, id string, req agent.ConvertRequest, progress func(float64, string)) ([]agent.ConvertedDisk, error) {
	res, err := f.call("StagingConvert", h, "", ds, id, req, progress)
	return result[[]agent.ConvertedDisk](res, 0), err
}

// StagingExport records the call.
func (f *Fake) StagingExport(ctx context.Context, h hosts.Target, ds string, id string, req agent.ExportRequest, progress func(float64, string)) ([]agent.ExportedFile, error) {
	res, err := f.call("StagingExport", h, "", ds, id, req, progress)
	return result[[]agent.ExportedFile](res, 0), err
}

// StagingOpen records the call.
func (f *Fake) StagingOpen(ctx context.Context, h hosts.Target, ds string, id string, name string) (io.ReadCloser, int64, error) {
	res, err := f.call("StagingOpen", h, "", ds, id, name)
	return result[io.ReadCloser](res, 0), result[int64](res, 1), err
}

// StagingDelete records the call.
func (f *Fake) StagingDelete(ctx context.Context, h hosts.Target, ds string, id string) error {
	_, err := f.call("StagingDelete", h, "", ds, id)
	return err
}
