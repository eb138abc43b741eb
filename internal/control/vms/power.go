package vms

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/hosts"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/tasks"
)

// What each power action needs and leads to.
var powerActions = map[string]struct {
	from []string // states it may start from
	to   string
}{
	api.ActionStart:   {[]string{api.PowerOff, api.PowerSuspended}, api.PowerOn},
	api.ActionStop:    {[]string{api.PowerOn, api.PowerSuspended}, api.PowerOff},
	api.ActionReset:   {[]string{api.PowerOn}, api.PowerOn},
	api.ActionSuspend: {[]string{api.PowerOn}, api.PowerSuspended},
	api.ActionResume:  {[]string{api.PowerSuspended}, api.PowerOn},
}

// CheckPowerRequest checks a power request on its own: a known action,
// force only to stop, a timeout within bounds.
func CheckPowerRequest(req api.PowerRequest) error {
	if _, ok := powerActions[req.Action]; !ok {
		names := make([]string, 0, len(powerActions))
		for a := range powerActions {
			names = append(names, a)
		}
		sort.Strings(names)
		return api.Errorf(api.ErrInvalid, "power action must be one of %s, got %q", strings.Join(names, ", "), req.Action)
	}
	if req.Force && req.Action != api.ActionStop {
		return api.Errorf(api.ErrInvalid, "force applies only to stop")
	}
	if req.TimeoutSeconds < 0 || req.TimeoutSeconds > 3600 {
		return api.Errorf(api.ErrInvalid, "timeoutSeconds must be between 0 (default %s) and 3600, got %d", api.DefaultStopTimeout, req.TimeoutSeconds)
	}
	return nil
}

// checkPower says whether a power action can start from the VM's state.
func checkPower(vm *api.VM, action string) error {
	pa := powerActions[action]
	for _, f := range pa.from {
		if vm.Status.PowerState == f {
			return nil
		}
	}
	if vm.Status.PowerState == pa.to && action != api.ActionReset {
		return api.Errorf(api.ErrConflict, "vm %s is already %s", vm.Metadata.Name, pa.to)
	}
	return api.Errorf(api.ErrConflict, "cannot %s vm %s: it is %s (needs %s)", action, vm.Metadata.Name, vm.Status.PowerState, strings.Join(pa.from, " or "))
}

// Power queues a power action (req, checked by CheckPowerRequest) on vm,
// on its host h, once the VM's state allows it and, for a power-on, the
// host has room.
func (s *Service) Power(ctx context.Context, vm *api.VM, h *api.Host, req api.PowerRequest) (*api.Task, error) {
	err := inventory.FirstErr(inventory.CheckReady(vm), checkPower(vm, req.Action))
	if err == nil && vm.Spec.Template {
		err = api.Errorf(api.ErrConflict, "vm %s is a template: it does not run; clone it (vdc vm create NEW --from-template %s)", vm.Metadata.Name, vm.Metadata.Name)
	}
	if err == nil && req.Action == api.ActionStart && vm.Status.PowerState == api.PowerOff {
		err = s.checkRoom(vm, h)
	}
	if err != nil {
		return nil, err
	}
	return s.tasks.Submit(ctx, s.st.Store.Txn(), tasks.New(ctx, api.OpVMPower(req.Action), vm, req))
}

// checkRoom answers at once when a power-on cannot fit; the task checks
// again, holding the room.
func (s *Service) checkRoom(vm *api.VM, h *api.Host) error {
	cl, err := s.cluster(vm)
	if err != nil {
		return err
	}
	if _, err := s.places.Admit(vm, cl, h, false); err != nil {
		return err
	}
	return s.ha.CheckHAAdmission(vm, cl, h)
}

// runPower is the vm.power.* tasks.
func (s *Service) runPower(ctx context.Context, t *tasks.Run) (any, error) {
	var req api.PowerRequest
	if err := t.Params(&req); err != nil {
		return nil, err
	}
	if req.Action == api.ActionStart {
		return s.PowerOn(ctx, t, t.Task.Target.ID)
	}
	vm, h, err := s.inv.LoadVM(ctx, t)
	if err != nil {
		return nil, err
	}
	if err := checkPower(vm, req.Action); err != nil {
		if t.Resumed && vm.Status.PowerState == powerActions[req.Action].to {
			return vm.Status.PowerState, nil // done before the restart
		}
		return nil, err
	}
	var st api.AgentVMState
	if req.Action == api.ActionStop && !req.Force && vm.Status.PowerState == api.PowerOn {
		st, err = s.gracefulStop(ctx, t, vm, h, req)
	} else {
		t.Progress(ctx, 10, req.Action+" in progress")
		st, err = s.hosts.Power(ctx, hosts.TargetOf(h), vm.Metadata.ID, req)
	}
	if err != nil {
		return nil, fmt.Errorf("%s vm %s on host %s: %w", req.Action, vm.Metadata.Name, h.Metadata.Name, err)
	}
	t.Stage(api.KindVM, vm.Metadata.ID, inventory.VMStateChange(st))
	return st.PowerState, nil
}

// gracefulStop asks the guest to shut down and powers the VM off once
// the timeout is up; the host does both in one call. Meanwhile the task
// says what it waits for and how long is left, then that it powers off:
// a guest that ignores the request must not look like a task that hangs.
func (s *Service) gracefulStop(ctx context.Context, t *tasks.Run, vm *api.VM, h *api.Host, req api.PowerRequest) (api.AgentVMState, error) {
	timeout := api.DefaultStopTimeout
	if req.TimeoutSeconds > 0 {
		timeout = time.Duration(req.TimeoutSeconds) * time.Second
	}
	how := "ACPI"
	if g := vm.Status.Guest; g != nil && g.State == api.GuestRunning {
		how = "guest agent" // the host asks through it while it answers
	}
	// The host's clock for the timeout starts when the call arrives,
	// a little after this one: it powers off just after we say so.
	start := time.Now()
	deadline := start.Add(timeout)
	var st api.AgentVMState
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		st, err = s.hosts.Power(ctx, hosts.TargetOf(h), vm.Metadata.ID, req)
	}()
	// One update a second, at most about a hundred for a long timeout.
	step := max(time.Second, (timeout / 100).Truncate(time.Second))
	tick := time.NewTicker(step)
	defer tick.Stop()
	for {
		left := time.Until(deadline)
		if left <= 0 {
			t.Announce(ctx, 90, fmt.Sprintf("the guest did not shut down within %s; powering off", timeout))
			<-done
			return st, err
		}
		pct := 10 + int(80*time.Since(start)/timeout)
		t.Announce(ctx, pct, fmt.Sprintf("waiting for the guest to shut down (%s), %s left", how, shortLeft(left, step)))
		select {
		case <-done:
			return st, err
		case <-tick.C:
		}
	}
}

// shortLeft rounds a remaining time up to whole steps: "42s", "3m10s".
func shortLeft(left, step time.Duration) string {
	return ((left + step - 1) / step * step).String()
}

// PowerOn starts (or resumes) a VM: it pushes the current definition,
// holds room on the host (until the task's outcome is recorded), and
// records the new state with the task's outcome.
func (s *Service) PowerOn(ctx context.Context, t *tasks.Run, vmID string) (any, error) {
	vm, err := state.Read[*api.VM](ctx, s.st, vmID)
	if err != nil {
		return nil, err
	}
	h, err := s.inv.VMHost(vm)
	if err != nil {
		return nil, err
	}
	if err := checkPower(vm, api.ActionStart); err != nil {
		if t.Resumed && vm.Status.PowerState == api.PowerOn {
			return api.PowerOn, nil
		}
		return nil, err
	}
	action := api.ActionStart
	if vm.Status.PowerState == api.PowerSuspended {
		action = api.ActionResume
	} else if err := s.admitAndDefine(ctx, t, vm, h); err != nil {
		return nil, err
	}
	t.Progress(ctx, 60, "powering on")
	st, err := s.hosts.Power(ctx, hosts.TargetOf(h), vm.Metadata.ID, api.PowerRequest{Action: action})
	if err != nil {
		return nil, fmt.Errorf("power on vm %s on host %s: %w", vm.Metadata.Name, h.Metadata.Name, err)
	}
	t.Stage(api.KindVM, vm.Metadata.ID, inventory.VMStateChange(st))
	return st.PowerState, nil
}

// admitAndDefine takes room on h for a powered-off VM to start, held until
// the task's outcome is recorded, checks HA admission and gives the host
// the VM's current definition.
func (s *Service) admitAndDefine(ctx context.Context, t *tasks.Run, vm *api.VM, h *api.Host) error {
	cl, err := s.cluster(vm)
	if err != nil {
		return err
	}
	release, err := s.places.Admit(vm, cl, h, true)
	if err != nil {
		return err
	}
	// Hold the room until the new power state is recorded.
	t.After(release)
	if err := s.ha.CheckHAAdmission(vm, cl, h); err != nil {
		return err
	}
	cfg, err := s.inv.VMConfig(vm)
	if err != nil {
		return err
	}
	if _, err := s.hosts.Define(ctx, hosts.TargetOf(h), cfg); err != nil {
		return fmt.Errorf("update the definition of vm %s on host %s: %w", vm.Metadata.Name, h.Metadata.Name, err)
	}
	return nil
}
