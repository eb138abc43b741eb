// Package inventory holds the rules every domain package shares about the
// inventory's objects: finding them by name (Lookup, Pick), which host a VM
// is on and what it needs there (VMHost, VMConfig, VMLease), whether a VM
// is ready or busy (CheckReady, NotMoving, NotHotAdding), recording what a
// host reports of a VM (VMStateChange, SetPower), the VMs of a host, claims
// on names that tasks record later (SubmitOnVM, PendingClaims), what still
// depends on an object to be deleted (InUse), VM folders (finding one by
// path, ID or name, a folder's path, where a VM goes: Folder, FolderPath,
// FolderDest), and following a job on a host (FollowJob).
//
// inventory depends on state, tasks, hosts and placement; the domain
// packages (vms, migration, storage, transfer, ha, maintenance) depend on
// it, never the other way.
package inventory

import (
	"github.com/vdc-project/vdc/internal/control/hosts"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/tasks"
)

// Inventory is the shared view of the inventory, and what acting on it
// takes: its state, the tally of VMs, the hosts and task submission.
type Inventory struct {
	St    *state.State
	Tally *state.Tally
	Hosts hosts.Client
	Tasks *tasks.Submitter
	// ServerDataDir is the management server's own data, which no
	// datastore may overlap.
	ServerDataDir string
}
