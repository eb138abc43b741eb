// Package storage is the qemu driver's disk operations on a VM: snapshots
// (switching the disks to overlays, with or without the memory), copies of
// a disk as of now, merges of a snapshot's file into its base (journalled,
// so that one interrupted is finished rather than guessed at) and moves of
// a running VM's disks to new files.
//
// The operations are written against VM, the few things they need of one
// of the driver's VMs, rather than against the driver's vm type: that type
// keeps its QEMU process, power state, guest agent and migrations under
// one lock with the QMP event loop, and moving that state to share it
// would split the lock. Each operation here runs QMP commands through
// VM.Execute and reads or records what it must through VM's methods; the
// QMP steps themselves are package blockjob's and package migration's.
package storage

import (
	"context"
	"log/slog"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu/blockjob"
)

// VM is what the storage operations need of one of the driver's VMs.
type VM interface {
	// Execute sends a QMP command to the VM's running QEMU (an error
	// wrapping hypervisor.ErrWrongState when it has none).
	Execute(ctx context.Context, cmd string, args, out any) error
	Name() string
	// Dir is the VM's own directory (merge journals are kept there).
	Dir() string
	// Disk is the VM's disk of that name (ErrInvalid if it has none).
	Disk(name string) (hypervisor.DiskConfig, error)
	// SetDiskPath records a disk's new active file.
	SetDiskPath(name, path string)
	State() hypervisor.VMState
	// SetPower changes the VM's power state, saves it and tells
	// subscribers.
	SetPower(power, reason string)
	// HasQEMU says whether the VM has a running QEMU.
	HasQEMU() bool
	// Hold keeps QEMU's STOP and RESUME events from being read as the VM
	// being suspended or resumed while an operation pauses it itself,
	// until release is called.
	Hold() (release func())
	// Freeze freezes the guest's file systems through its agent.
	Freeze(ctx context.Context) (thaw func(), err error)
	// Hardware is the running QEMU's hardware.
	Hardware() api.VMHardware
	Log() *slog.Logger
}

// vm is a VM an operation works on, with the helpers they share.
type vm struct {
	VM
	speed int64 // of a live merge (bytes/s; 0: no cap)
}

// command sends a QMP command to the running QEMU.
func (v vm) command(ctx context.Context, cmd string, args any) error {
	return v.Execute(ctx, cmd, args, nil)
}

// query sends a QMP command without arguments and reads its answer.
func (v vm) query(ctx context.Context, cmd string, out any) error {
	return v.Execute(ctx, cmd, nil, out)
}

// node finds the block node a disk's device uses now.
func (v vm) node(ctx context.Context, diskName string) (string, error) {
	return blockjob.Node(ctx, v, v.Name(), diskName)
}

// powerState is the VM's power state now.
func (v vm) powerState() string { return v.State().Power }
