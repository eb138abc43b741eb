package qemu

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu/cmdline"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu/guestagent"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu/migration"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu/proc"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu/seed"
	"github.com/vdc-project/vdc/internal/qmp"
)

// vm is one VM's runtime state in this driver.
type vm struct {
	d   *Driver
	cfg hypervisor.VMConfig
	p   proc.Paths
	log *slog.Logger

	mu     sync.Mutex
	power  string
	reason string
	since  time.Time
	vnc    string
	pid    int
	qmp    *qmp.Client
	exited chan struct{} // closed when the running QEMU process is gone
	// stopping is set when we asked QEMU to quit; guestDown when the
	// guest powered itself off. Both explain the exit that follows.
	stopping  bool
	guestDown bool
	stop      context.CancelFunc // ends the monitor and guest poller
	runCtx    context.Context    // lives while this QEMU runs
	started   time.Time          // when this QEMU process started

	// A copy being received (Incoming) is not a VM of this host yet.
	incoming     bool
	made         []string       // disks Incoming created, removed if it is aborted
	mig          *migration.Job // the current or last migration out
	mirrors      []string       // block jobs copying the disks to a target
	shuttingDown bool           // a shutdown request is being repeated
	lease        string         // the lease file the running QEMU holds
	// hw is the running QEMU's hardware: what it started with, and the
	// vCPUs and memory hot-added since (hotadd.go).
	hw api.VMHardware
	// quiet counts storage operations pausing the VM themselves: their
	// STOP and RESUME are not a suspend or resume.
	quiet int
	// ioError says why QEMU paused the guest on a failed write.
	ioError string

	// guest watches the guest agent; its lock is taken after mu, never
	// before.
	guest *guestagent.Agent
}

func (v *vm) State() hypervisor.VMState {
	v.mu.Lock()
	defer v.mu.Unlock()
	return hypervisor.VMState{Power: v.power, Reason: v.reason, Since: v.since, VNC: v.vnc}
}

// SetPower changes the power state, saves it and tells subscribers.
func (v *vm) SetPower(power, reason string) {
	v.mu.Lock()
	changed := v.power != power || v.reason != reason
	if v.power != power {
		v.since = time.Now().UTC()
	}
	v.power, v.reason = power, reason
	v.mu.Unlock()
	v.save()
	if changed {
		v.d.notify(v.cfg.ID)
	}
}

// save keeps the VM's state for the next agent process.
func (v *vm) save() {
	v.mu.Lock()
	st := proc.State{Power: v.power, Reason: v.reason, Since: v.since, Lease: v.lease}
	if v.qmp != nil {
		hw := v.hw
		st.Hardware = &hw
	}
	v.mu.Unlock()
	if err := proc.WriteState(v.p.StateFile(), st); err != nil {
		v.log.Warn("cannot save VM state", "err", err)
	}
}

func (v *vm) wrongState(op string, want ...string) error {
	v.mu.Lock()
	cur := v.power
	v.mu.Unlock()
	for _, w := range want {
		if cur == w {
			return nil
		}
	}
	return fmt.Errorf("%s vm %s: it is %s: %w", op, v.cfg.Name, cur, hypervisor.ErrWrongState)
}

// start runs QEMU and waits until its QMP socket answers.
func (v *vm) start(ctx context.Context) error {
	if err := v.wrongState("start", hypervisor.StateOff); err != nil {
		return err
	}
	if err := v.refuseUnfinished(); err != nil {
		return err
	}
	// QEMU starts paused (-S) until it holds the lease: the guest never
	// runs without it, even if this agent dies half-way (attach then
	// finishes the start, or ends it).
	if err := v.launchHolding(ctx, hypervisor.BootHardware(v.cfg), []string{"-S"}); err != nil {
		return fmt.Errorf("start vm %s: %w", v.cfg.Name, err)
	}
	if err := v.command(ctx, "cont", nil); err != nil {
		v.kill()
		return fmt.Errorf("start vm %s: %w", v.cfg.Name, err)
	}
	v.SetPower(hypervisor.StateOn, "")
	return nil
}

// run takes the VM's lease and lets a QEMU started paused (-S) run.
func (v *vm) run(ctx context.Context) error {
	if err := v.takeLease(ctx, v.cfg.Lease); err != nil {
		return err
	}
	return v.command(ctx, "cont", nil)
}

// kill ends a QEMU that must not run, and waits for it.
func (v *vm) kill() {
	v.mu.Lock()
	v.stopping = true
	pid, exited := v.pid, v.exited
	v.mu.Unlock()
	if exited != nil {
		_ = proc.KillAndWait(pid, exited)
	}
}

// launch runs a QEMU process for the VM with the hardware hw and extra
// arguments (an incoming migration), and takes it over once its QMP socket
// answers.
func (v *vm) launch(ctx context.Context, hw api.VMHardware, extra []string) error {
	if err := v.d.checkFiles(v.cfg); err != nil {
		return err
	}
	if err := os.MkdirAll(v.p.Run, 0o700); err != nil {
		return err
	}
	if err := seed.Write(ctx, SeedTool, v.cfg.Seed, v.p.Seed()); err != nil {
		return err
	}
	for _, s := range []string{v.p.QMP(), v.p.QGA(), v.p.Console(), v.p.VNC()} {
		_ = os.Remove(s) // a stale socket of an earlier run
	}
	// Keep the previous boot's console output one generation back.
	if fi, err := os.Stat(v.p.ConsoleLog()); err == nil && fi.Size() > 0 {
		_ = os.Rename(v.p.ConsoleLog(), v.p.ConsoleLog()+".1")
	}
	logf, err := os.OpenFile(v.p.QEMULog(), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	v.mu.Lock()
	cfg := v.cfg
	v.mu.Unlock()
	cmd := exec.Command(v.d.opt.Binary, append(cmdline.Args(cfg, hw, v.p.Files(), v.d.accel), extra...)...)
	cmd.Dir = v.cfg.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own session: signals to the agent (Ctrl-C, its process group)
	// never reach the VM, and it outlives the agent.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run %s: %w", v.d.opt.Binary, err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	v.mu.Lock()
	v.started = time.Now()
	v.hw = hw
	v.stopping, v.guestDown = false, false
	v.guest.Launched()
	v.mu.Unlock()

	q, err := proc.DialQMP(ctx, v.p.QMP(), exited)
	if err != nil {
		_ = cmd.Process.Kill()
		<-exited
		msg := proc.Tail(v.p.QEMULog(), 3)
		if msg == "" {
			msg = err.Error()
		}
		return fmt.Errorf("QEMU did not start: %s", msg)
	}
	v.running(q, cmd.Process.Pid, exited, func() error { return waitErr })
	if err := v.applyLinks(ctx); err != nil {
		v.kill()
		return err
	}
	return nil
}

// running takes over a live QEMU: it follows its events and its exit, and
// polls the guest agent. exitErr, when known, is the exit status.
func (v *vm) running(q *qmp.Client, pid int, exited chan struct{}, exitErr func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	v.mu.Lock()
	v.qmp, v.pid, v.exited, v.stop, v.runCtx, v.shuttingDown = q, pid, exited, cancel, ctx, false
	v.guest.Started()
	v.mu.Unlock()
	// Where the display is, as QEMU says (a QEMU started by an older vdc
	// may serve it on TCP).
	var vnc struct {
		Enabled bool   `json:"enabled"`
		Family  string `json:"family"`
		Host    string `json:"host"`
		Service string `json:"service"`
	}
	qctx, qcancel := context.WithTimeout(ctx, 5*time.Second)
	if err := q.Execute(qctx, "query-vnc", nil, &vnc); err == nil && vnc.Enabled && vnc.Service != "" {
		addr := net.JoinHostPort(vnc.Host, vnc.Service)
		if vnc.Family == "unix" {
			addr = "unix:" + vnc.Service
		}
		v.mu.Lock()
		v.vnc = addr
		v.mu.Unlock()
	}
	qcancel()
	events, unsubscribe := q.Subscribe()
	go func() {
		defer unsubscribe()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-events:
				if !ok {
					events = nil // the QMP connection ended; the exit follows
					continue
				}
				v.onEvent(e)
			case <-exited:
				v.onExit(exitErr)
				return
			}
		}
	}()
	// A copy being received does not run its guest yet: nothing may talk
	// to its guest agent channel until it does (FinishIncoming starts the
	// poller then), or the bytes queue into the device mid-migration.
	if !v.isIncoming() {
		go v.guest.Poll(ctx)
	}
}

func (v *vm) onEvent(e qmp.Event) {
	switch e.Name {
	case "SHUTDOWN":
		var d struct {
			Guest  bool   `json:"guest"`
			Reason string `json:"reason"`
		}
		_ = json.Unmarshal(e.Data, &d)
		if d.Guest {
			v.mu.Lock()
			v.guestDown = true
			v.mu.Unlock()
		}
	case "BLOCK_IO_ERROR":
		v.onIOError(e)
	case "STOP":
		if v.migrating() || v.isQuiet() {
			return // a migration or snapshot pauses it itself; not a suspend
		}
		if v.State().Power == hypervisor.StateOn {
			v.SetPower(hypervisor.StateSuspended, v.pauseReason())
		}
	case "RESUME":
		if v.isQuiet() {
			return
		}
		v.mu.Lock()
		v.ioError = ""
		v.mu.Unlock()
		if v.State().Power == hypervisor.StateSuspended {
			v.SetPower(hypervisor.StateOn, "")
		}
	case "GUEST_PANICKED":
		v.SetPower(v.State().Power, "the guest kernel panicked")
	case "RESET":
		v.guest.Reset()
	}
}

// migrating says whether a migration out is under way or has completed
// (the source then stays paused until released).
func (v *vm) migrating() bool {
	v.mu.Lock()
	m := v.mig
	v.mu.Unlock()
	return m != nil && m.Get().State != hypervisor.MigrationFailed && m.Get().State != hypervisor.MigrationCancelled
}

// onExit records why QEMU ended.
func (v *vm) onExit(exitErr func() error) {
	v.mu.Lock()
	if v.stop != nil {
		v.stop()
	}
	v.guest.Exited()
	if v.qmp != nil {
		v.qmp.Close()
	}
	v.qmp, v.pid, v.exited, v.vnc = nil, 0, nil, ""
	v.lease = "" // the kernel let go of it with the process
	stopping, guestDown := v.stopping || v.shuttingDown, v.guestDown
	v.mu.Unlock()
	reason := ""
	switch {
	case stopping: // asked for: no reason to give
	case guestDown:
		reason = "guest shut down"
	default:
		why := "exit status unknown (QEMU was started by an earlier agent)"
		if exitErr != nil {
			if err := exitErr(); err != nil {
				why = err.Error()
			} else {
				why = "exit status 0"
			}
		}
		reason = "QEMU ended unexpectedly: " + why
		if t := proc.Tail(v.p.QEMULog(), 2); t != "" {
			reason += ": " + t
		}
		v.log.Warn("VM stopped unexpectedly", "vm", v.cfg.Name, "reason", reason)
	}
	v.SetPower(hypervisor.StateOff, reason)
}

// attach takes over a VM defined earlier, maybe running under a QEMU an
// earlier agent started.
func (v *vm) attach(ctx context.Context) error {
	saved, err := proc.ReadState(v.p.StateFile())
	if err != nil {
		return err
	}
	v.mu.Lock()
	v.power, v.reason, v.since, v.lease = saved.Power, saved.Reason, saved.Since, saved.Lease
	// A QEMU that an older agent started without saying its hardware
	// has the one its config boots with.
	v.hw = hypervisor.BootHardware(v.cfg)
	v.hw.NICPorts = nil // such a vdc put the NICs on the root bus
	if saved.Hardware != nil {
		v.hw = *saved.Hardware
	}
	v.mu.Unlock()
	pid, alive := proc.Find(v.p.PIDFile(), cmdline.SMBIOSUUID(v.cfg.ID))
	if !alive {
		if saved.Power != hypervisor.StateOff {
			v.SetPower(hypervisor.StateOff, "QEMU ended while no agent watched it")
		}
		return nil
	}
	exited := make(chan struct{})
	go proc.Watch(pid, exited)
	q, err := proc.DialQMP(ctx, v.p.QMP(), exited)
	if err != nil {
		return fmt.Errorf("re-attach vm %s (pid %d): %w", v.cfg.Name, pid, err)
	}
	var st struct {
		Status string `json:"status"`
	}
	if err := q.Execute(ctx, "query-status", nil, &st); err != nil {
		q.Close()
		return fmt.Errorf("re-attach vm %s: %w", v.cfg.Name, err)
	}
	v.running(q, pid, exited, nil)
	switch st.Status {
	case "prelaunch":
		// A start that an agent's death cut short before the lease was
		// QEMU's: finish it, or end it if another copy holds the lease.
		if err := v.run(ctx); err != nil {
			v.kill()
			v.SetPower(hypervisor.StateOff, "start interrupted, then refused: "+err.Error())
			return nil
		}
		v.SetPower(hypervisor.StateOn, "")
	case "paused":
		if saved.Power != hypervisor.StateSuspended {
			v.SetPower(hypervisor.StateSuspended, "paused by QEMU")
		}
	default:
		if saved.Power != hypervisor.StateOn {
			v.SetPower(hypervisor.StateOn, "")
		}
	}
	v.log.Info("re-attached to a running VM", "vm", v.cfg.Name, "pid", pid, "status", st.Status)
	return nil
}

// askShutdown asks the guest once: through its agent if it answers, else
// with the ACPI power button.
func (v *vm) askShutdown(ctx context.Context) error {
	if v.guest.Info().State == hypervisor.GuestRunning {
		gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := v.guest.Shutdown(gctx)
		cancel()
		if err == nil {
			return nil
		}
		v.log.Info("guest agent shutdown failed; pressing the power button", "err", err)
	}
	return v.command(ctx, "system_powerdown", nil)
}

// repeatShutdown asks again every few seconds while the VM runs and is
// on: the first request may have come before the guest could act on it.
func (v *vm) repeatShutdown(ctx context.Context) {
	t := time.NewTicker(3 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if v.State().Power != hypervisor.StateOn {
			v.mu.Lock()
			v.shuttingDown = false
			v.mu.Unlock()
			return
		}
		if err := v.askShutdown(ctx); err != nil && ctx.Err() == nil {
			v.log.Debug("repeated shutdown request failed", "err", err)
		}
	}
}

// Execute sends a QMP command to the running QEMU, with arguments args
// and the answer decoded into out (either may be nil).
func (v *vm) Execute(ctx context.Context, cmd string, args, out any) error {
	v.mu.Lock()
	q := v.qmp
	v.mu.Unlock()
	if q == nil {
		return fmt.Errorf("%s: vm %s has no running QEMU: %w", cmd, v.cfg.Name, hypervisor.ErrWrongState)
	}
	return q.Execute(ctx, cmd, args, out)
}

// command sends a QMP command to the running QEMU.
func (v *vm) command(ctx context.Context, cmd string, args any) error {
	return v.Execute(ctx, cmd, args, nil)
}

// query sends a QMP command without arguments and reads its answer.
func (v *vm) query(ctx context.Context, cmd string, out any) error {
	return v.Execute(ctx, cmd, nil, out)
}

// powerOff makes QEMU quit (killing it if it does not) and waits for it.
func (v *vm) powerOff(ctx context.Context) error {
	if err := v.wrongState("power off", hypervisor.StateOn, hypervisor.StateSuspended); err != nil {
		return err
	}
	v.mu.Lock()
	v.stopping = true
	exited, pid := v.exited, v.pid
	v.mu.Unlock()
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_ = v.command(qctx, "quit", nil) // the answer may be lost as QEMU goes
	cancel()
	if exited == nil {
		return nil
	}
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		v.log.Warn("QEMU did not quit; killing it", "vm", v.cfg.Name, "pid", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			return fmt.Errorf("power off vm %s: QEMU (pid %d) does not die", v.cfg.Name, pid)
		}
	}
	// onExit runs in the monitor; wait until it recorded the state.
	for i := 0; i < 100 && v.State().Power != hypervisor.StateOff; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// release stops watching the VM without touching it.
func (v *vm) release() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.stop != nil {
		v.stop()
	}
	v.guest.Close()
	if v.qmp != nil {
		v.qmp.Close()
		v.qmp = nil
	}
}
