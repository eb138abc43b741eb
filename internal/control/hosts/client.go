// Package hosts is what the control plane knows and calls of its hosts:
// the Client interface every control package calls a host's agent
// through (agent.Client implements it; hoststest.Fake stands in for it in
// unit tests), the Target a call goes to, and the Bus on which what the
// hosts' heartbeats and silences tell is published (HostFailed,
// VMsReported...) for the domains that act on it to subscribe.
// hosts/liveness records heartbeats and watches for silent hosts.
package hosts

import (
	"context"
	"io"

	"github.com/coder/websocket"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/agent"
	"github.com/vdc-project/vdc/internal/hypervisor"
)

// Target is the host a call goes to.
type Target = agent.Target

// Client calls hosts' agents.
type Client interface {
	// Forget drops the connections to a host (its certificate changed).
	Forget(hostID string)

	// VM lifecycle.
	Define(ctx context.Context, h Target, cfg hypervisor.VMConfig) (api.AgentVMState, error)
	Undefine(ctx context.Context, h Target, id string, force bool) error
	Power(ctx context.Context, h Target, id string, req api.PowerRequest) (api.AgentVMState, error)
	VM(ctx context.Context, h Target, vmID string) (agent.VMInfo, error)
	HotAdd(ctx context.Context, h Target, vmID string, req agent.HotAddRequest) (hypervisor.HotAddResult, error)
	Exec(ctx context.Context, h Target, vmID string, req agent.ExecRequest) (hypervisor.ExecResult, error)
	ConsoleLog(ctx context.Context, h Target, vmID string, bytes int) ([]byte, error)
	Console(ctx context.Context, h Target, vmID string) (*websocket.Conn, error)
	VNC(ctx context.Context, h Target, vmID string) (*websocket.Conn, error)

	// Migration.
	Incoming(ctx context.Context, h Target, req agent.IncomingRequest) (hypervisor.Incoming, error)
	FinishIncoming(ctx context.Context, h Target, vmID string) (api.AgentVMState, error)
	AbortIncoming(ctx context.Context, h Target, vmID string) error
	MigrateOut(ctx context.Context, h Target, vmID string, to hypervisor.MigrateTarget) error
	CancelMigration(ctx context.Context, h Target, vmID string) error
	Release(ctx context.Context, h Target, vmID string, removeDisks bool) error
	MoveDisks(ctx context.Context, h Target, vmID string, moves []hypervisor.DiskMove) error

	// Disks and snapshots.
	Snapshot(ctx context.Context, h Target, vmID string, req hypervisor.SnapshotRequest) (hypervisor.SnapshotResult, error)
	Revert(ctx context.Context, h Target, vmID string, req hypervisor.RevertRequest) (api.AgentVMState, error)
	MergeDisk(ctx context.Context, h Target, vmID string, m hypervisor.DiskMerge) error
	AddDisk(ctx context.Context, h Target, vmID string, d hypervisor.DiskConfig) (api.AgentVMState, error)
	ResizeDisk(ctx context.Context, h Target, vmID, disk string, size int64) error
	RemoveDisk(ctx context.Context, h Target, vmID, disk string) error
	// NICs, hot-plugged into and unplugged from running VMs.
	AddNIC(ctx context.Context, h Target, vmID string, n hypervisor.NICConfig) (api.AgentVMState, error)
	UpdateNIC(ctx context.Context, h Target, vmID string, n hypervisor.NICConfig) (api.AgentVMState, error)
	RemoveNIC(ctx context.Context, h Target, vmID, nic string) (api.AgentVMState, error)
	RemoveFiles(ctx context.Context, h Target, paths []string) error
	CopyDisk(ctx context.Context, h Target, cp hypervisor.DiskCopy) (agent.Job, error)

	// Files, images, imports and exports.
	PutFile(ctx context.Context, h Target, datastoreID, path string, body io.Reader, size int64, inspect bool) (agent.FileResult, error)
	DeleteFile(ctx context.Context, h Target, datastoreID, path string) error
	Import(ctx context.Context, h Target, datastoreID string, req agent.ImportRequest) (agent.Job, error)
	Job(ctx context.Context, h Target, id string) (agent.Job, error)
	StagingPut(ctx context.Context, h Target, ds, id, name string, body io.Reader, size int64) (agent.StagingFile, error)
	StagingIndex(ctx context.Context, h Target, ds, id string) (*agent.StagedPackage, error)
	StagingFetch(ctx context.Context, h Target, ds, id string, req agent.FetchRequest, progress func(float64, string)) (*agent.StagedPackage, error)
	StagingConvert(ctx context.Context, h Target, ds, id string, req agent.ConvertRequest, progress func(float64, string)) ([]agent.ConvertedDisk, error)
	StagingExport(ctx context.Context, h Target, ds, id string, req agent.ExportRequest, progress func(float64, string)) ([]agent.ExportedFile, error)
	StagingOpen(ctx context.Context, h Target, ds, id, name string) (io.ReadCloser, int64, error)
	StagingDelete(ctx context.Context, h Target, ds, id string) error
}

var _ Client = (*agent.Client)(nil)

// TargetOf is where calls to host h go.
func TargetOf(h *api.Host) Target {
	return Target{ID: h.Metadata.ID, Name: h.Metadata.Name, Address: h.Status.Address}
}
