package vms

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/agent"
	"github.com/vdc-project/vdc/internal/control/hosts"
	"github.com/vdc-project/vdc/internal/control/tasks"
	"github.com/vdc-project/vdc/internal/hypervisor"
)

// Exec runs a program in the guest of vm, running on host h, as `qm guest
// exec` does, and records a vm.exec task for the audit trail (with the
// command, not the input: it may hold secrets). req is checked already.
func (s *Service) Exec(ctx context.Context, vm *api.VM, h *api.Host, req api.ExecRequest) (api.ExecResult, error) {
	started := time.Now().UTC()
	res, err := s.hosts.Exec(ctx, hosts.TargetOf(h), vm.Metadata.ID, agent.ExecRequest{
		ExecRequest:    hypervisor.ExecRequest{Path: req.Command[0], Args: req.Command[1:], Input: []byte(req.Input)},
		TimeoutSeconds: req.TimeoutSeconds,
	})
	out := api.ExecResult{ExitCode: res.ExitCode, Signal: res.Signal, Stdout: string(res.Stdout), Stderr: string(res.Stderr), Truncated: res.Truncated}
	t := tasks.New(ctx, "vm.exec", vm, map[string]any{"command": req.Command})
	t.Started = &started
	if err != nil {
		err = fmt.Errorf("exec %q in vm %s: %w", strings.Join(req.Command, " "), vm.Metadata.Name, err)
		now := time.Now().UTC()
		t.State, t.Finished = api.TaskFailed, &now
		t.Error, _ = api.ErrorFrom(err)
	} else {
		tasks.Done(t, map[string]int{"exitCode": res.ExitCode})
		t.Started = &started
	}
	if _, serr := s.tasks.Submit(ctx, s.st.Store.Txn(), t); serr != nil {
		s.log.Warn("cannot record exec task", "vm", vm.Metadata.Name, "err", serr)
	}
	if err != nil {
		return api.ExecResult{}, err
	}
	return out, nil
}

// ConsoleLog is the last n bytes of vm's serial console, from its host h.
func (s *Service) ConsoleLog(ctx context.Context, vm *api.VM, h *api.Host, n int) ([]byte, error) {
	return s.hosts.ConsoleLog(ctx, hosts.TargetOf(h), vm.Metadata.ID, n)
}
