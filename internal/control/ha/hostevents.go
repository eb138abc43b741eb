package ha

import (
	"context"
	"fmt"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/hosts"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/tasks"
	"github.com/vdc-project/vdc/internal/store"
)

// onHostFailed marks a silent host of an HA cluster failed and queues the
// failover of its VMs, in one transaction that holds only while this
// server leads. An error (the host changed: a heartbeat?) leaves it to be
// judged again.
func (s *Service) onHostFailed(ctx context.Context, e hosts.HostFailed) error {
	h := e.Host
	upd := store.Clone(h)
	upd.Status.Connection = api.HostDisconnected
	upd.Status.FailedAt = time.Now().UTC()
	t := tasks.New(ctx, api.OpHostFailover, upd, nil)
	t.Owner = Owner
	t.Message = fmt.Sprintf("host %s failed: no heartbeat for %s", h.Metadata.Name, e.Silent.Round(time.Second))
	if _, err := s.d.Txn().Update(h, upd).Create(t).Commit(ctx); err != nil {
		return fmt.Errorf("declare host %s failed: %w", h.Metadata.Name, err)
	}
	s.d.Log.Warn("host failed: restarting its HA-protected VMs elsewhere", "host", h.Metadata.Name, "silent", e.Silent.Round(time.Second))
	return nil
}

// onHostRecovered notes that a host declared failed is back.
func (s *Service) onHostRecovered(_ context.Context, e hosts.HostRecovered) error {
	s.d.Log.Warn("a host HA declared failed is back", "host", e.Host.Metadata.Name, "failedAt", e.FailedAt)
	return nil
}

// onVMsReported answers, of the VMs a host reports, the ones that now
// belong to another host (HA restarted them there while this one was cut
// off): the host must stop and forget its copy.
func (s *Service) onVMsReported(_ context.Context, e hosts.VMsReported) error {
	e.Reply.Drop = append(e.Reply.Drop, s.strays(e.Host, e.VMs)...)
	return nil
}

func (s *Service) strays(h *api.Host, reported []api.AgentVMState) []string {
	var out []string
	var busy map[string]bool
	for _, st := range reported {
		vm, ok := state.Get[*api.VM](s.d.State, st.ID)
		if !ok || vm.Spec.Host.ID == h.Metadata.ID {
			continue
		}
		if busy == nil {
			busy = s.busyVMs("")
		}
		if busy[st.ID] { // a migration still needs the copy
			continue
		}
		s.d.Log.Warn("host still has a VM that runs on another host now; dropping its copy", "host", h.Metadata.Name, "vm", vm.Metadata.Name)
		out = append(out, st.ID)
	}
	return out
}

// onFenced keeps what an isolated host did to its VMs, as tasks: the
// audit trail of every change.
func (s *Service) onFenced(ctx context.Context, e hosts.Fenced) error {
	h := e.Host
	for _, f := range e.Records {
		vm, ok := state.Get[*api.VM](s.d.State, f.VM)
		if !ok {
			continue
		}
		t := tasks.Done(tasks.New(ctx, api.OpVMIsolation, vm, f), f)
		t.Owner = "host " + h.Metadata.Name
		t.Message = fmt.Sprintf("%s by host %s at %s: %s", f.Action, h.Metadata.Name, f.At.Format(time.RFC3339), f.Reason)
		if _, err := s.d.Tasks.Submit(ctx, s.d.State.Store.Txn(), t); err != nil {
			s.d.Log.Warn("cannot record an isolation response", "host", h.Metadata.Name, "vm", f.VM, "err", err)
		}
	}
	return nil
}

// onHASettings answers the host's HA settings when the ones it runs are
// not current.
func (s *Service) onHASettings(_ context.Context, e hosts.HASettings) error {
	if ha := s.HostSettings(e.Host); ha.Gen != e.Gen {
		e.Reply.HA = ha
	}
	return nil
}
