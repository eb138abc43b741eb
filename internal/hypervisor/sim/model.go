package sim

import (
	"fmt"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/hypervisor"
)

// The migration model. A migration out is computed in full when it starts,
// as a plan of timed segments, and MigrationStatus reads the plan at the
// time elapsed since, so that its numbers depend on the clock alone (and are
// exact under Options.Now). It follows QEMU's pre-copy migration:
//
//   - setup: MigrationSetupTime, nothing is sent;
//   - mirroring, only when the target receives the disks (MigrateTarget.NBD):
//     the data the guest has written to its disks (LabelDiskUsed) is copied
//     at the bandwidth B. Writes the guest makes to its disks meanwhile are
//     not modeled;
//   - active: memory is sent in passes. Pass 1 sends all of it (M, the VM's
//     memory); pass n+1 sends what the guest dirtied during pass n, at its
//     dirty rate D (LabelDirtyRate) for the duration of pass n, at most M.
//     After each pass, if what is left could be sent within the downtime
//     limit (MigrateTarget.DowntimeLimit, DefaultDowntimeLimit when zero), the
//     guest is paused and the rest sent: the downtime is that time plus
//     SwitchoverTime;
//   - completed, or failed after MaxMigrationPasses passes that did not
//     converge.
//
// B is MigrateTarget.MaxBandwidth, DefaultMigrationBandwidth when zero.
// Compression ("zstd", "xbzrle") makes memory CompressionRatio times
// smaller on the wire, so memory moves at B×CompressionRatio; disks are
// copied over NBD uncompressed, as QEMU does. TransferredBytes counts bytes
// on the wire, RemainingBytes memory still to send in the current pass (as
// QEMU's ram counters do). Pass counts the passes made while the guest ran;
// the final stop-and-copy is the downtime, not a pass. TLS and multifd cost
// nothing: the model is bandwidth-bound.
//
// When the guest dirties memory as fast as it can be sent (D ≥ B), the
// passes never shrink. Auto-converge (MigrateTarget.AutoConverge) then
// throttles the guest's vCPUs, and so its dirty rate: by AutoConvergeStep
// percent after the first pass in which the guest dirtied more than half
// of what was sent (QEMU's throttle trigger threshold, which QEMU applies
// only after two such periods), and by AutoConvergeStep more after each
// such pass, up to AutoConvergeMax percent. A throttled pass dirties
// D×(100−throttle)/100 per second.
//
// A migration out is not saved: an agent that restarts during one finds the
// VM running here as if the migration had been cancelled. What it decided
// once complete (the guest paused here, waiting for Release) is saved.

// Labels that describe a guest's workload to the migration model; their
// values are sizes as api.ParseSize reads them ("64MiB", "1.5G").
const (
	// LabelDirtyRate is how many bytes of memory the guest writes per
	// second; 0 (an idle guest) when absent.
	LabelDirtyRate = "sim.vdc.io/dirty-rate"
	// LabelDiskUsed is how much data the guest's disks hold, what a copy of
	// all of them moves; 0 when absent.
	LabelDiskUsed = "sim.vdc.io/disk-used"
)

// Constants of the migration model.
const (
	// DefaultMigrationBandwidth is the bandwidth in bytes/s of a migration
	// with no MaxBandwidth and of disk moves: a 10 Gb/s link, roughly.
	DefaultMigrationBandwidth = 1 << 30
	// DefaultDowntimeLimit is QEMU's default downtime-limit.
	DefaultDowntimeLimit = 300 * time.Millisecond
	MigrationSetupTime   = 50 * time.Millisecond
	// SwitchoverTime is what the pause costs on top of sending the last
	// dirty memory: stopping the vCPUs and sending device state.
	SwitchoverTime     = 5 * time.Millisecond
	MaxMigrationPasses = 30
	// AutoConvergeStep and AutoConvergeMax are in percent of the guest's
	// CPU time taken away.
	AutoConvergeStep = 20
	AutoConvergeMax  = 99
	CompressionRatio = 2
)

// migrationModel is what a plan is computed from.
type migrationModel struct {
	memory, dirtyRate, diskUsed int64
	bandwidth                   int64
	mirror                      bool
	downtimeLimit               time.Duration
	autoConverge                bool
	ratio                       int64 // memory compression
}

func newMigrationModel(cfg hypervisor.VMConfig, to hypervisor.MigrateTarget) (migrationModel, error) {
	m := migrationModel{
		memory:        cfg.MemoryBytes,
		bandwidth:     to.MaxBandwidth,
		mirror:        to.NBD != "",
		downtimeLimit: to.DowntimeLimit,
		autoConverge:  to.AutoConverge,
		ratio:         1,
	}
	if m.bandwidth <= 0 {
		m.bandwidth = DefaultMigrationBandwidth
	}
	if m.downtimeLimit <= 0 {
		m.downtimeLimit = DefaultDowntimeLimit
	}
	switch to.Compress {
	case "":
	case "zstd", "xbzrle":
		m.ratio = CompressionRatio
	default:
		return m, fmt.Errorf("unknown compression %q (want zstd or xbzrle)", to.Compress)
	}
	var err error
	if m.dirtyRate, err = labelSize(cfg, LabelDirtyRate); err != nil {
		return m, err
	}
	if m.mirror {
		if m.diskUsed, err = labelSize(cfg, LabelDiskUsed); err != nil {
			return m, err
		}
	}
	return m, nil
}

func labelSize(cfg hypervisor.VMConfig, label string) (int64, error) {
	s, ok := cfg.Labels[label]
	if !ok {
		return 0, nil
	}
	n, err := api.ParseSize(s)
	if err != nil {
		return 0, fmt.Errorf("label %s: %w", label, err)
	}
	return int64(n), nil
}

// segment is a stretch of a plan during which one thing happens at a
// steady rate.
type segment struct {
	state      string // MigrationSetup, MigrationMirroring or MigrationActive
	start, dur time.Duration
	disk       int64 // disk bytes copied over the segment
	mem        int64 // memory bytes sent over the segment, before compression
	pass       int64 // 0 for the final stop-and-copy
	dirtyRate  int64
}

// plan is a whole migration or disk move, from its start to its end.
type plan struct {
	segs         []segment
	end          time.Duration // when it completes or fails
	memory, disk int64
	ratio        int64
	downtime     time.Duration
	passes       int64
	lastRate     int64
	// failure is why it fails at end (empty when it completes), with the
	// memory still dirty then.
	failure  string
	leftover int64
}

// sendTime is how long bytes take at rate bytes/s.
func sendTime(bytes, rate int64) time.Duration {
	return time.Duration(float64(bytes) / float64(rate) * float64(time.Second))
}

func (p *plan) add(s segment) {
	s.start = p.end
	p.segs = append(p.segs, s)
	p.end += s.dur
}

func (m migrationModel) plan() plan {
	p := plan{memory: m.memory, disk: m.diskUsed, ratio: m.ratio}
	p.add(segment{state: hypervisor.MigrationSetup, dur: MigrationSetupTime})
	if m.mirror {
		p.add(segment{state: hypervisor.MigrationMirroring, dur: sendTime(m.diskUsed, m.bandwidth), disk: m.diskUsed})
	}
	eff := m.bandwidth * m.ratio
	send, throttle := m.memory, int64(0)
	for pass := int64(1); ; pass++ {
		rate := m.dirtyRate * (100 - throttle) / 100
		dur := sendTime(send, eff)
		p.add(segment{state: hypervisor.MigrationActive, dur: dur, mem: send, pass: pass, dirtyRate: rate})
		p.passes, p.lastRate = pass, rate
		dirtied := min(int64(float64(rate)*dur.Seconds()), m.memory)
		if last := sendTime(dirtied, eff); last <= m.downtimeLimit {
			p.downtime = last + SwitchoverTime
			p.add(segment{state: hypervisor.MigrationActive, dur: p.downtime, mem: dirtied, dirtyRate: rate})
			return p
		}
		if pass == MaxMigrationPasses {
			p.failure, p.leftover = m.failure(throttle, rate), dirtied
			return p
		}
		// QEMU compares what was dirtied with what went over the wire.
		if m.autoConverge && 2*dirtied > send/m.ratio {
			throttle = min(throttle+AutoConvergeStep, AutoConvergeMax)
		}
		send = dirtied
	}
}

// failure explains a migration that does not converge, with what would
// make it.
func (m migrationModel) failure(throttle, rate int64) string {
	bw := api.Size(m.bandwidth*m.ratio).String() + "/s"
	if m.ratio > 1 {
		bw += " (compressed)"
	}
	dirty := api.Size(m.dirtyRate).String() + "/s"
	switch {
	case m.autoConverge:
		return fmt.Sprintf("the migration did not converge in %d passes even with auto-converge taking %d%% of the guest's CPU: "+
			"its dirty rate of %s (%s/s throttled) against a bandwidth of %s is too high for a downtime limit of %s; "+
			"give it more bandwidth or a longer downtime limit", MaxMigrationPasses, throttle, dirty, api.Size(rate), bw, m.downtimeLimit)
	case m.dirtyRate >= m.bandwidth*m.ratio:
		return fmt.Sprintf("the migration cannot converge: the guest's dirty rate of %s exceeds the bandwidth of %s "+
			"(gave up after %d passes); use auto-converge or more bandwidth", dirty, bw, MaxMigrationPasses)
	default:
		return fmt.Sprintf("the migration did not converge in %d passes: the guest's dirty rate of %s is too close to the bandwidth of %s "+
			"for a downtime limit of %s; use auto-converge, more bandwidth or a longer downtime limit", MaxMigrationPasses, dirty, bw, m.downtimeLimit)
	}
}

// diskMovePlan copies bytes of disk data at DefaultMigrationBandwidth.
func diskMovePlan(bytes int64) plan {
	p := plan{disk: bytes, ratio: 1}
	p.add(segment{state: hypervisor.MigrationMirroring, dur: sendTime(bytes, DefaultMigrationBandwidth), disk: bytes})
	return p
}

// progress is the status e into the plan as if it were still under way,
// which it is for e < p.end; it is also what a migration cancelled or
// abandoned at e reports.
func (p *plan) progress(e time.Duration) hypervisor.MigrationStatus {
	e = min(max(e, 0), p.end)
	st := hypervisor.MigrationStatus{State: hypervisor.MigrationSetup, TotalBytes: p.memory, RemainingBytes: p.memory,
		DiskTotal: p.disk, TotalTime: e}
	for _, s := range p.segs {
		if e < s.start {
			break
		}
		f := 1.0
		if s.dur > 0 {
			f = min(float64(e-s.start)/float64(s.dur), 1)
		}
		st.State = s.state
		st.DiskDone += int64(f * float64(s.disk))
		if s.state == hypervisor.MigrationActive {
			sent := int64(f * float64(s.mem))
			st.TransferredBytes += sent / p.ratio
			st.RemainingBytes = s.mem - sent
			st.DirtyRate = s.dirtyRate
			if s.pass > 0 {
				st.Pass = s.pass
			}
		}
	}
	return st
}

// final is the status once the plan has run to its end.
func (p *plan) final() hypervisor.MigrationStatus {
	st := p.progress(p.end)
	st.Pass, st.DirtyRate = p.passes, p.lastRate
	if p.failure != "" {
		st.State, st.Error, st.RemainingBytes = hypervisor.MigrationFailed, p.failure, p.leftover
		return st
	}
	st.State, st.RemainingBytes, st.Downtime = hypervisor.MigrationCompleted, 0, p.downtime
	return st
}
