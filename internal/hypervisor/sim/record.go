package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/hypervisor"
)

// StateFile is the name of the file sim keeps in each VM's directory.
const StateFile = "sim-vm.json"

// recordVersion lets a later sim read files written by this one.
const recordVersion = 1

// record is everything sim knows about one VM; it is what a VM "is" while no
// agent process is alive, so all of it is persisted.
type record struct {
	Version int                 `json:"version"`
	Config  hypervisor.VMConfig `json:"config"`
	Power   string              `json:"power"`
	Reason  string              `json:"reason,omitempty"`
	Since   time.Time           `json:"since"`

	// BootedAt is when the guest finishes booting and starts acting on ACPI
	// requests; ShutdownAt is when a requested guest shutdown completes (zero
	// when none is pending). Both are absolute so that a shutdown completes on
	// schedule even while no agent is running. While the VM is suspended they
	// are frozen: the guest's clock does not advance, so Resume moves them
	// later by the time spent suspended.
	BootedAt   time.Time `json:"bootedAt,omitzero"`
	ShutdownAt time.Time `json:"shutdownAt,omitzero"`
	// SentAt is when a migration out of the VM completed: its guest has been
	// paused here since, for good, while it runs on the target. Power stays
	// as it was (QEMU's source reports running until it is released), but a
	// pending shutdown never completes here.
	SentAt time.Time `json:"sentAt,omitzero"`

	// CreatedDir records that Define made Config.Dir, so Undefine may remove
	// it again; a directory the agent made is the agent's to remove.
	CreatedDir bool `json:"createdDir,omitempty"`

	// Hardware is the running VM's (hotadd.go); nil while it is off.
	Hardware *api.VMHardware `json:"hardware,omitempty"`

	// Files models the VM's disk files (sim makes none): by path, what
	// each takes and what it is backed by.
	Files map[string]simFile `json:"files,omitempty"`
}

func (r *record) state() hypervisor.VMState {
	return hypervisor.VMState{Power: r.Power, Reason: r.Reason, Since: r.Since}
}

// catchUp applies what happened to the guest while nobody was watching: a
// shutdown whose deadline has passed has completed.
func (r *record) catchUp(now time.Time) bool {
	if r.Power != hypervisor.StateOn || r.ShutdownAt.IsZero() || !r.SentAt.IsZero() || now.Before(r.ShutdownAt) {
		return false
	}
	at := r.ShutdownAt
	r.turnOff(at, reasonGuestShutdown)
	return true
}

func (r *record) turnOff(at time.Time, reason string) {
	r.Power = hypervisor.StateOff
	r.Reason = reason
	r.Since = at
	r.BootedAt = time.Time{}
	r.ShutdownAt = time.Time{}
	r.SentAt = time.Time{}
	r.Hardware = nil
}

func statePath(dir string) string { return filepath.Join(dir, StateFile) }

// readRecord loads the record in dir; a missing file is ErrNotFound.
func readRecord(dir string) (record, error) {
	var r record
	b, err := os.ReadFile(statePath(dir))
	if errors.Is(err, os.ErrNotExist) {
		return r, fmt.Errorf("no %s in %s: %w", StateFile, dir, hypervisor.ErrNotFound)
	}
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("read %s: %w", statePath(dir), err)
	}
	if r.Version > recordVersion {
		return r, fmt.Errorf("read %s: version %d is newer than this sim (%d)", statePath(dir), r.Version, recordVersion)
	}
	switch r.Power {
	case hypervisor.StateOff, hypervisor.StateOn, hypervisor.StateSuspended:
	default:
		return r, fmt.Errorf("read %s: unknown power state %q", statePath(dir), r.Power)
	}
	return r, nil
}

// writeRecord replaces the record in its VM's directory atomically, so that
// an agent killed mid-write leaves the old state or the new one, never half.
// It does not fsync: the file models what survives the agent process, and
// that is the page cache. A host crash stops real VMs too, and an fsync per
// power operation would dominate scale tests.
func writeRecord(r record) error {
	dir := r.Config.Dir
	r.Version = recordVersion
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+StateFile+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(append(b, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, statePath(dir))
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// removeFiles deletes what sim put in a VM's directory: the state file, and
// the directory itself when sim made it and nothing else lives there.
func removeFiles(r record) error {
	if err := os.Remove(statePath(r.Config.Dir)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if r.CreatedDir {
		// Best effort: other files mean someone else still uses the directory.
		_ = os.Remove(r.Config.Dir)
	}
	return nil
}
