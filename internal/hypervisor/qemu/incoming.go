package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/vdc-project/vdc/internal/disk"
	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu/cmdline"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu/migration"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu/proc"
)

// incomingFile records, in a received VM's directory, the disks Incoming
// made, so that an agent that died mid-migration can remove them.
const incomingFile = "incoming.json"

// Incoming starts a copy of a VM waiting for its state.
func (d *Driver) Incoming(ctx context.Context, cfg hypervisor.VMConfig, opt hypervisor.IncomingOptions) (hypervisor.Incoming, error) {
	var in hypervisor.Incoming
	if err := d.canReceive(cfg, opt); err != nil {
		return in, err
	}
	v := d.newVM(cfg)
	v.incoming = true
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return in, err
	}
	var err error
	defer func() {
		if err != nil {
			v.abortIncoming(context.Background())
		}
	}()
	if err = v.incomingDisks(ctx, opt.Disks); err != nil {
		return in, err
	}
	if err = v.startIncoming(ctx, opt); err != nil {
		return in, err
	}
	if opt.Disks {
		if in.NBD, err = migration.ExportDisks(ctx, v, opt.Address, diskNames(cfg.Disks), opt.TLS); err != nil {
			return in, fmt.Errorf("receive vm %s: %w", cfg.Name, err)
		}
	}
	var uri string
	if uri, err = migration.Listen(ctx, v, cfg.Name, opt.Address); err != nil {
		return in, err
	}
	in.URI = uri
	return in, nil
}

// canReceive refuses a VM this host cannot receive.
func (d *Driver) canReceive(cfg hypervisor.VMConfig, opt hypervisor.IncomingOptions) error {
	if err := validate(cfg); err != nil {
		return err
	}
	d.mu.Lock()
	_, exists := d.vms[cfg.ID]
	d.mu.Unlock()
	if exists {
		return fmt.Errorf("receive vm %s: it is already on this host: %w", cfg.Name, hypervisor.ErrWrongState)
	}
	if opt.Address == "" {
		return errors.New("receive vm: no address to receive on")
	}
	return nil
}

// incomingDisks makes the empty disks a VM receives over NBD (disks), and
// records them for Discard, or checks that the shared disks it will use
// are reachable.
func (v *vm) incomingDisks(ctx context.Context, disks bool) error {
	cfg := v.cfg
	if disks {
		err := v.makeEmptyDisks(ctx)
		b, _ := json.Marshal(v.made)
		if werr := os.WriteFile(filepath.Join(cfg.Dir, incomingFile), b, 0o600); err == nil {
			err = werr
		}
		if err != nil {
			return fmt.Errorf("receive vm %s: %w", cfg.Name, err)
		}
		return nil
	}
	for _, dc := range cfg.Disks {
		if _, serr := os.Stat(dc.Path); serr != nil {
			return fmt.Errorf("receive vm %s: disk %s is not reachable from this host: %w", cfg.Name, dc.Name, serr)
		}
	}
	return nil
}

// startIncoming launches the QEMU waiting for the state and sets its
// migration parameters.
func (v *vm) startIncoming(ctx context.Context, opt hypervisor.IncomingOptions) error {
	cfg := v.cfg
	extra := []string{"-incoming", "defer"}
	if opt.Disks {
		extra = append(extra, "-S") // runs only once the disks are complete
	}
	// The copy has the sender's hardware, hot-added vCPUs and memory
	// included: QEMU only takes a state into the same devices.
	hw := hypervisor.BootHardware(cfg)
	if cfg.Hardware != nil {
		hw = *cfg.Hardware
	}
	if err := v.launch(ctx, hw, extra); err != nil {
		return fmt.Errorf("receive vm %s: %w", cfg.Name, err)
	}
	v.d.mu.Lock()
	v.d.vms[cfg.ID] = v
	v.d.mu.Unlock()
	if opt.TLS {
		if err := migration.AddTLS(ctx, v, v.d.opt.TLSDir, "server"); err != nil {
			return fmt.Errorf("receive vm %s: %w", cfg.Name, err)
		}
	}
	tls := ""
	if opt.TLS {
		tls = "server"
	}
	if err := migration.SetParams(ctx, v, opt.Multifd, opt.Compress, tls, map[string]any{}); err != nil {
		return fmt.Errorf("receive vm %s: %w", cfg.Name, err)
	}
	return nil
}

func diskNames(disks []hypervisor.DiskConfig) []string {
	var names []string
	for _, dc := range disks {
		names = append(names, dc.Name)
	}
	return names
}

// makeEmptyDisks creates the disks a VM will receive over NBD.
func (v *vm) makeEmptyDisks(ctx context.Context) error {
	for _, dc := range v.cfg.Disks {
		if _, err := os.Stat(dc.Path); err == nil {
			return fmt.Errorf("disk %s: %s already exists on this host", dc.Name, dc.Path)
		}
		if err := os.MkdirAll(filepath.Dir(dc.Path), 0o755); err != nil {
			return err
		}
		v.made = append(v.made, dc.Path)
		if err := disk.Create(ctx, dc.Path, dc.SizeBytes); err != nil {
			return fmt.Errorf("disk %s: %w", dc.Name, err)
		}
	}
	return nil
}

// FinishIncoming runs the received copy.
func (d *Driver) FinishIncoming(ctx context.Context, id string) error {
	v, err := d.get(id)
	if err != nil {
		return err
	}
	if !v.isIncoming() {
		return fmt.Errorf("finish receiving vm %s: it is not being received: %w", v.cfg.Name, hypervisor.ErrWrongState)
	}
	// The state has arrived when QEMU says the incoming migration completed.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var st struct {
			Status string `json:"status"`
		}
		if err := v.query(ctx, "query-migrate", &st); err != nil {
			return fmt.Errorf("finish receiving vm %s: %w", v.cfg.Name, err)
		}
		if st.Status == "completed" {
			break
		}
		if st.Status == "failed" || time.Now().After(deadline) {
			return fmt.Errorf("finish receiving vm %s: the incoming migration is %q", v.cfg.Name, st.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var status struct {
		Status string `json:"status"`
	}
	if err := v.query(ctx, "query-status", &status); err != nil {
		return err
	}
	if status.Status != "running" {
		_ = v.command(ctx, "nbd-server-stop", nil)
		if err := v.run(ctx); err != nil {
			return fmt.Errorf("finish receiving vm %s: %w", v.cfg.Name, err)
		}
	} else if err := v.takeLease(ctx, v.cfg.Lease); err != nil {
		// It started by itself at the end of the transfer, and another
		// copy holds the lease: this one must not run.
		_ = v.command(ctx, "stop", nil)
		return fmt.Errorf("finish receiving vm %s: %w", v.cfg.Name, err)
	}
	v.mu.Lock()
	v.incoming, v.made = false, nil
	runCtx := v.runCtx
	v.mu.Unlock()
	go v.guest.Poll(runCtx)
	_ = os.Remove(filepath.Join(v.cfg.Dir, incomingFile))
	v.SetPower(hypervisor.StateOn, "")
	v.announce(ctx)
	return nil
}

// announce has QEMU tell the network where the VM's NICs are now (a few
// RARPs from each MAC, and the guest's own gratuitous ARPs where its
// driver takes part), so that switches and peers learn the new host at
// once rather than when the guest next speaks. QEMU's defaults: 5 rounds,
// 50 ms then 100 ms more each.
func (v *vm) announce(ctx context.Context) {
	if len(v.cfg.NICs) == 0 {
		return
	}
	if err := v.command(ctx, "announce-self", map[string]any{"initial": 50, "max": 550, "rounds": 5, "step": 100}); err != nil {
		v.log.Warn("announcing the migrated VM's MACs failed; peers learn them when the guest next sends", "err", err)
	}
}

// Discard removes what an interrupted incoming migration left in dir: its
// QEMU process (waiting for a source that will not come) and the disks it
// was receiving.
func (d *Driver) Discard(ctx context.Context, id, dir string) error {
	if pid, alive := proc.Find(filepath.Join(dir, "qemu.pid"), cmdline.SMBIOSUUID(id)); alive {
		exited := make(chan struct{})
		go proc.Watch(pid, exited)
		if err := proc.KillAndWait(pid, exited); err != nil {
			return err
		}
		d.log.Info("killed the QEMU of an interrupted incoming migration", "vm", id, "pid", pid)
	}
	var made []string
	if b, err := os.ReadFile(filepath.Join(dir, incomingFile)); err == nil && json.Unmarshal(b, &made) == nil {
		for _, p := range made {
			_ = os.Remove(p)
			_ = os.Remove(filepath.Dir(p))
		}
	}
	if run := d.runDirFor(hypervisor.VMConfig{ID: id, Dir: dir}); run != dir {
		_ = os.RemoveAll(run)
	}
	return nil
}

func (v *vm) isIncoming() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.incoming
}

// AbortIncoming stops a copy being received and removes what it made.
func (d *Driver) AbortIncoming(ctx context.Context, id string) error {
	v, err := d.get(id)
	if err != nil {
		return err
	}
	if !v.isIncoming() {
		return fmt.Errorf("abort receiving vm %s: it is not being received: %w", v.cfg.Name, hypervisor.ErrWrongState)
	}
	v.abortIncoming(ctx)
	return nil
}

func (v *vm) abortIncoming(ctx context.Context) {
	v.mu.Lock()
	v.stopping = true
	exited, pid := v.exited, v.pid
	made := v.made
	v.mu.Unlock()
	if exited != nil {
		_ = proc.KillAndWait(pid, exited)
	}
	for _, p := range made {
		_ = os.Remove(p)
		_ = os.Remove(filepath.Dir(p))
	}
	v.forget()
}
