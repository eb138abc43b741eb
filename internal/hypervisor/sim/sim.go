package sim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/vdc-project/vdc/internal/hypervisor"
)

var _ hypervisor.Driver = (*Driver)(nil)

// LabelIgnoreACPI, set to "true" in a VM's labels, makes its guest ignore
// Shutdown like a guest with no ACPI daemon, so that callers can test their
// shutdown-timeout-then-power-off path.
const LabelIgnoreACPI = "sim.vdc.io/ignore-acpi"

// Defaults for zero Options fields. The host size is fixed rather than taken
// from the real machine so that simulated clusters are the same everywhere.
const (
	DefaultCPUs          = 16
	DefaultMemoryBytes   = 64 << 30
	DefaultShutdownDelay = 50 * time.Millisecond
)

// ErrClosed is returned by every method of a Driver after Close.
var ErrClosed = errors.New("sim driver closed")

const reasonGuestShutdown = "guest shut down"

// Options configure a simulated host. The zero value is a usable host.
type Options struct {
	// CPUs and MemoryBytes are the host capacity Info reports
	// (DefaultCPUs, DefaultMemoryBytes when zero).
	CPUs        int
	MemoryBytes int64
	// BootDelay is how long a guest takes to boot after Start or Reset. A
	// guest acts on a Shutdown request only once booted, as a Linux guest
	// picks up a pending power-button press when its ACPI daemon starts.
	BootDelay time.Duration
	// ShutdownDelay is how long a booted guest takes to shut down after
	// Shutdown (DefaultShutdownDelay when zero; negative means at once, still
	// asynchronously).
	ShutdownDelay time.Duration
	Logger        *slog.Logger
	// Host is the host's name, written in the leases its VMs hold.
	Host string
	// Now replaces time.Now for timestamps and deadlines. Timers still run on
	// the real clock, for the real remaining time computed from Now.
	Now func() time.Time
}

// Driver is a simulated hypervisor host. It is safe for concurrent use.
type Driver struct {
	cpus          int
	memory        int64
	bootDelay     time.Duration
	shutdownDelay time.Duration
	log           *slog.Logger
	now           func() time.Time
	host          string

	// mu guards everything below, including each vm. One lock is enough: no
	// operation blocks or does more than one small file write while holding it.
	mu     sync.Mutex
	vms    map[string]*vm
	subs   map[*subscription]struct{}
	closed bool
	// copies are full copies made for VMs not defined yet (a clone).
	copies map[string]simFile

	// running counts goroutines the driver started (timer callbacks that may
	// fire, subscription pumps) so that Close can wait for all of them.
	running sync.WaitGroup
}

type vm struct {
	rec record
	log *slog.Logger
	// timer completes a pending guest shutdown. gen changes whenever the
	// timer is replaced or stopped, so that a callback which fired but lost
	// the race for mu can tell that it no longer applies.
	timer *time.Timer
	gen   uint64
	// incoming marks a copy being received (Incoming): not a VM of this
	// host until FinishIncoming, and not saved until then.
	incoming bool
	// mig is the VM's migration out or disk move, under way or the last one.
	mig *migration
	// lease is the VM's lease while it runs here (lease.go).
	lease     *os.File
	leasePath string
}

// New returns a simulated host with no VMs; Attach brings back VMs that an
// earlier Driver (an earlier agent process) left behind.
func New(opts Options) *Driver {
	d := &Driver{
		cpus:          opts.CPUs,
		memory:        opts.MemoryBytes,
		bootDelay:     max(opts.BootDelay, 0),
		shutdownDelay: opts.ShutdownDelay,
		log:           opts.Logger,
		now:           opts.Now,
		host:          opts.Host,
		vms:           make(map[string]*vm),
		copies:        make(map[string]simFile),
		subs:          make(map[*subscription]struct{}),
	}
	if d.cpus <= 0 {
		d.cpus = DefaultCPUs
	}
	if d.memory <= 0 {
		d.memory = DefaultMemoryBytes
	}
	switch {
	case d.shutdownDelay == 0:
		d.shutdownDelay = DefaultShutdownDelay
	case d.shutdownDelay < 0:
		d.shutdownDelay = 0
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.now == nil {
		d.now = time.Now
	}
	return d
}

// Info reports the modeled host.
func (d *Driver) Info(ctx context.Context) (hypervisor.HostInfo, error) {
	if err := d.usable(ctx); err != nil {
		return hypervisor.HostInfo{}, fmt.Errorf("host info: %w", err)
	}
	return hypervisor.HostInfo{Driver: "sim", Accel: "sim", Version: "sim 1", CPUs: d.cpus, MemoryBytes: d.memory}, nil
}

// Close models the agent process ending: the driver lets go of its VMs
// without changing them (their state files stay, running VMs stay on) and
// ends every subscription. The leases go, as the locks of a process that
// ends do; the next driver takes them again. After Close returns no goroutine of the driver is
// running and every method fails with ErrClosed. Close is idempotent.
func (d *Driver) Close() error {
	d.mu.Lock()
	if !d.closed {
		d.closed = true
		for _, v := range d.vms {
			d.disarm(v)
			d.stopMigration(v)
			if v.lease != nil {
				v.lease.Close()
				v.lease, v.leasePath = nil, ""
			}
		}
		for s := range d.subs {
			close(s.done)
			delete(d.subs, s)
		}
	}
	d.mu.Unlock()
	d.running.Wait()
	return nil
}

// usable reports why an operation cannot start; call it without mu.
func (d *Driver) usable(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	return nil
}

// lookup finds a known VM, with its migration brought up to date; the
// caller holds mu.
func (d *Driver) lookup(id string) (*vm, error) {
	if d.closed {
		return nil, ErrClosed
	}
	v, ok := d.vms[id]
	if !ok {
		return nil, hypervisor.ErrNotFound
	}
	d.settle(v, d.now())
	return v, nil
}

// commit persists rec and only then makes it current, so that what callers
// are told never runs ahead of what a restarted agent would find. The caller
// holds mu.
func (d *Driver) commit(v *vm, rec record) error {
	if err := writeRecord(rec); err != nil {
		return err
	}
	v.rec = rec
	d.arm(v)
	if rec.Power == hypervisor.StateOff {
		d.abandon(v, d.now())
	}
	d.syncLease(v)
	return nil
}

// force makes rec current even if it cannot be saved, for what happened to
// the guest by itself: the guest is in that state whether or not the file
// says so, and the next operation on the VM writes the file again. The
// caller holds mu.
func (d *Driver) force(v *vm, rec record, what string) {
	if err := writeRecord(rec); err != nil {
		v.log.Error("save state after "+what, "err", err)
	}
	v.rec = rec
	d.arm(v)
	if rec.Power == hypervisor.StateOff {
		d.abandon(v, rec.Since)
	}
	d.syncLease(v)
}

// arm (re)starts the shutdown timer to match v.rec; the caller holds mu.
func (d *Driver) arm(v *vm) {
	d.disarm(v)
	r := &v.rec
	if r.Power != hypervisor.StateOn || r.ShutdownAt.IsZero() || !r.SentAt.IsZero() {
		return
	}
	gen := v.gen
	d.running.Add(1)
	v.timer = time.AfterFunc(max(r.ShutdownAt.Sub(d.now()), 0), func() {
		defer d.running.Done()
		d.shutdownDone(v, gen)
	})
}

// disarm stops the shutdown timer; the caller holds mu.
func (d *Driver) disarm(v *vm) {
	v.gen++
	if v.timer != nil && v.timer.Stop() {
		// The callback will never run, so it cannot say it is done.
		d.running.Done()
	}
	v.timer = nil
}

// shutdownDone is the modeled guest finishing its shutdown.
func (d *Driver) shutdownDone(v *vm, gen uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || v.gen != gen || d.vms[v.rec.Config.ID] != v {
		return
	}
	v.timer = nil
	// A migration that ended first paused the guest before it was done,
	// or this shutdown already ended it.
	d.settle(v, v.rec.ShutdownAt)
	if v.rec.Power != hypervisor.StateOn || !v.rec.SentAt.IsZero() {
		return
	}
	rec := v.rec
	rec.turnOff(d.now(), reasonGuestShutdown)
	d.force(v, rec, "guest shutdown")
	v.log.Info("guest shut down")
	d.publish(v.rec.Config.ID)
}

// subscription feeds one Subscribe channel. Its queue is unbounded but holds
// each VM at most once, so the driver never blocks on a slow reader, never
// drops a change, and uses memory bounded by the number of VMs.
type subscription struct {
	out    chan string
	wake   chan struct{} // capacity 1: "the queue may be non-empty"
	done   chan struct{} // closed by Close
	queue  []string
	queued map[string]bool
}

// Subscribe returns a channel that receives a VM's ID after its state
// changed by itself (a guest shutdown completing); State then shows the new
// state. Changes to one VM that the reader has not yet received are merged
// into one. The channel is closed when ctx ends or the driver is closed.
func (d *Driver) Subscribe(ctx context.Context) <-chan string {
	s := &subscription{
		out:    make(chan string),
		wake:   make(chan struct{}, 1),
		done:   make(chan struct{}),
		queued: make(map[string]bool),
	}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		close(s.out)
		return s.out
	}
	d.subs[s] = struct{}{}
	d.running.Add(1)
	d.mu.Unlock()
	go d.pump(ctx, s)
	return s.out
}

func (d *Driver) pump(ctx context.Context, s *subscription) {
	defer d.running.Done()
	defer close(s.out)
	defer func() {
		d.mu.Lock()
		delete(d.subs, s)
		d.mu.Unlock()
	}()
	for {
		d.mu.Lock()
		var id string
		if len(s.queue) > 0 {
			id = s.queue[0]
			s.queue = s.queue[1:]
			delete(s.queued, id)
		}
		d.mu.Unlock()
		if id == "" {
			select {
			case <-s.wake:
				continue
			case <-ctx.Done():
				return
			case <-s.done:
				return
			}
		}
		select {
		case s.out <- id:
		case <-ctx.Done():
			return
		case <-s.done:
			return
		}
	}
}

// publish tells every subscriber that id changed; the caller holds mu.
func (d *Driver) publish(id string) {
	for s := range d.subs {
		if s.queued[id] {
			continue
		}
		s.queued[id] = true
		s.queue = append(s.queue, id)
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}
