package server

import (
	"fmt"
	"strings"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/tasks"
)

// Thin provisioning accounting. For each disk, VM and datastore:
// capacity (what guests see), provisioned (what could be written: the
// disks, plus every snapshot's disks, whose overlays can each grow to
// the full size, plus saved memory) and allocated (what the files take,
// as the hosts measure them).

// vmStorage sums a VM's disks for its view.
func vmStorage(vm *api.VM) *api.VMStorage {
	var st api.VMStorage
	for _, d := range vm.Spec.Disks {
		st.CapacityBytes += d.SizeBytes
	}
	st.ProvisionedBytes = provisioned(vm)
	for _, d := range vm.Status.Disks {
		st.AllocatedBytes += d.AllocatedBytes + d.SnapshotBytes
	}
	return &st
}

// provisioned is what a VM's files may grow to.
func provisioned(vm *api.VM) api.Size {
	var n api.Size
	for _, d := range vm.Spec.Disks {
		n += d.SizeBytes
	}
	for _, sn := range vm.Spec.Snapshots {
		for _, d := range sn.Disks {
			n += d.SizeBytes
		}
		if sn.Memory {
			n += sn.MemoryBytes
		}
	}
	return n
}

// alarmLevel says how full a datastore is.
func alarmLevel(capacity, free api.Size) string {
	if capacity <= 0 {
		return ""
	}
	used := float64(capacity-free) / float64(capacity) * 100
	switch {
	case used >= api.DatastoreCritPercent:
		return api.DatastoreAlarmCritical
	case used >= api.DatastoreWarnPercent:
		return api.DatastoreAlarmWarning
	}
	return ""
}

// datastoreEvents turns a change of a datastore's alarm into an event.
func datastoreEvents(base api.Event, prev, cur *api.Datastore) []api.Event {
	if prev.Status.Alarm == cur.Status.Alarm {
		return nil
	}
	e := base
	e.Type, e.From, e.To = api.EventDatastoreAlarm, prev.Status.Alarm, cur.Status.Alarm
	st := cur.Status
	used := 0.0
	if st.CapacityBytes > 0 {
		used = float64(st.CapacityBytes-st.FreeBytes) / float64(st.CapacityBytes) * 100
	}
	switch cur.Status.Alarm {
	case "":
		e.Message = fmt.Sprintf("datastore %s: space alarm cleared (%.0f%% used, %s free)", cur.Metadata.Name, used, st.FreeBytes)
	default:
		limit := api.DatastoreWarnPercent
		if cur.Status.Alarm == api.DatastoreAlarmCritical {
			limit = api.DatastoreCritPercent
		}
		e.Message = fmt.Sprintf("datastore %s is %.0f%% used, past %d%% (%s free of %s): %s", cur.Metadata.Name, used, limit,
			st.FreeBytes, st.CapacityBytes, strings.ToUpper(cur.Status.Alarm))
	}
	return []api.Event{e}
}

func validateCloudInit(ci *api.CloudInit) error {
	if ci == nil {
		return nil
	}
	if len(ci.UserData) > api.MaxUserData {
		return api.Errorf(api.ErrInvalid, "cloud-init user-data is %d bytes; the limit is %d", len(ci.UserData), api.MaxUserData)
	}
	if ci.UserData != "" && !strings.HasPrefix(ci.UserData, "#") && !strings.HasPrefix(ci.UserData, "Content-Type:") {
		return api.Errorf(api.ErrInvalid, "cloud-init user-data must start with #cloud-config, #! (a script) or be MIME multipart")
	}
	// User-data is a file (YAML, a script, MIME): lines and tabs, but no
	// other control characters, which no such file needs.
	if err := api.ValidateMultilineText("cloud-init user-data", ci.UserData); err != nil {
		return err
	}
	if len(ci.SSHKeys) > api.MaxSSHKeys {
		return api.Errorf(api.ErrInvalid, "at most %d SSH keys, got %d", api.MaxSSHKeys, len(ci.SSHKeys))
	}
	for i, k := range ci.SSHKeys {
		f := strings.Fields(k)
		if len(f) < 2 || strings.ContainsAny(k, "\n\r") || !(strings.HasPrefix(f[0], "ssh-") || strings.HasPrefix(f[0], "ecdsa-") || strings.HasPrefix(f[0], "sk-")) {
			return api.Errorf(api.ErrInvalid, "SSH key %d is not an OpenSSH public key (\"ssh-ed25519 AAAA... comment\")", i+1)
		}
		if err := api.ValidateText(fmt.Sprintf("SSH key %d", i+1), k); err != nil {
			return err
		}
	}
	if ci.Hostname != "" {
		if err := api.ValidateName("host", ci.Hostname); err != nil {
			return err
		}
	}
	return nil
}

// dropSnapshotFiles lists the files a deleted VM's snapshots kept (the
// host removes the current disks itself).
func (s *Server) snapshotFiles(vm *api.VM) []string {
	var out []string
	for _, sn := range vm.Spec.Snapshots {
		for _, d := range sn.Disks {
			if f, err := s.abs(d.Datastore.ID, d.Path); err == nil {
				out = append(out, f)
			}
		}
		if sn.Memory && len(sn.Disks) > 0 {
			if f, err := s.abs(sn.Disks[0].Datastore.ID, sn.MemoryPath); err == nil {
				out = append(out, f)
			}
		}
	}
	return out
}

func (s *Server) registerStorageTasks(r *tasks.Runner) {
	r.Register(api.OpSnapshotCreate, tasks.Handler{Run: s.runSnapshotCreate, Resumable: true})
	r.Register(api.OpSnapshotRevert, tasks.Handler{Run: s.runSnapshotRevert, Resumable: true})
	r.Register(api.OpSnapshotDelete, tasks.Handler{Run: s.runSnapshotDelete, Resumable: true})
	r.Register(api.OpVMClone, tasks.Handler{Run: s.runClone, Resumable: true})
	r.Register(api.OpDiskAdd, tasks.Handler{Run: s.runDiskAdd, Resumable: true})
	r.Register(api.OpDiskResize, tasks.Handler{Run: s.runDiskResize, Resumable: true})
	r.Register(api.OpDiskRemove, tasks.Handler{Run: s.runDiskRemove, Resumable: true})
}
