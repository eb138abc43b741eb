package migration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/hosts"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/hypervisor"
)

// follow polls the source host until its migration (or disk move) ends,
// reporting progress. A user's cancel stops it there (and throws the
// target's copy away when abortOnCancel).
func (m *migration) follow(ctx context.Context, abortOnCancel bool) (hypervisor.MigrationStatus, error) {
	var moved int64 = -1
	lastMove, lastAnswer := time.Now(), time.Now()
	for {
		info, err := m.s.hosts.VM(ctx, hosts.TargetOf(m.src), m.vm.Metadata.ID)
		if err != nil && ctx.Err() == nil && time.Since(lastAnswer) < m.s.stall {
			// QEMU migrates on while its agent restarts: wait for it.
			wait(ctx, 500*time.Millisecond)
			continue
		}
		if ctx.Err() != nil {
			if m.t.Canceled(ctx) {
				m.undo(func(c context.Context) {
					m.cancelOnSource(c)
					if abortOnCancel {
						m.abortIncoming(c)
					}
				})
			}
			return hypervisor.MigrationStatus{}, ctx.Err()
		}
		if err != nil {
			return hypervisor.MigrationStatus{}, fmt.Errorf("follow the migration on host %s: %w", m.src.Metadata.Name, err)
		}
		lastAnswer = time.Now()
		st := info.Migration
		m.t.Progress(ctx, migrationPercent(st), migrationMessage(st))
		// A cut link leaves TCP waiting for minutes: give up on a stream
		// that stopped moving.
		if now := st.TransferredBytes + st.DiskDone; now != moved {
			moved, lastMove = now, time.Now()
		} else if time.Since(lastMove) > m.s.stall && st.State != hypervisor.MigrationCompleted {
			m.undo(m.cancelOnSource)
			return st, fmt.Errorf("no data moved for %s: the link to the target is cut or too slow", m.s.stall)
		}
		if ended, err := m.ended(st); ended {
			return st, err
		}
		wait(ctx, migrationPoll)
	}
}

// ended says whether a migration in state st is over, and how.
func (m *migration) ended(st hypervisor.MigrationStatus) (bool, error) {
	if st.State != hypervisor.MigrationCompleted && !m.s.connected(m.dst.Metadata.ID) {
		// Its agent died or it is cut off: it could not take the VM over.
		m.undo(m.cancelOnSource)
		return true, fmt.Errorf("host %s stopped sending heartbeats (its agent is down or it is cut off)", m.dst.Metadata.Name)
	}
	switch st.State {
	case hypervisor.MigrationCompleted:
		return true, nil
	case hypervisor.MigrationFailed, hypervisor.MigrationCancelled:
		return true, fmt.Errorf("%s: %s", st.State, st.Error)
	case hypervisor.MigrationNone:
		return true, errors.New("the host has no migration of this VM (its agent restarted?)")
	}
	return false, nil
}

// wait waits for d, or less if ctx ends.
func wait(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// connected says whether a host's agent sends heartbeats.
func (s *Service) connected(hostID string) bool {
	h, ok := state.Get[*api.Host](s.st, hostID)
	return ok && h.Status.Connection == api.HostConnected
}

// migrationPercent places a status report on the task's 0-100: disks
// (when they move) up to 45, memory up to 95, and 99 once QEMU is done,
// for the switch-over.
func migrationPercent(st hypervisor.MigrationStatus) int {
	if st.State == hypervisor.MigrationCompleted {
		return 99
	}
	pct := 5
	if st.DiskTotal > 0 {
		pct += int(40 * st.DiskDone / st.DiskTotal)
	}
	if st.State == hypervisor.MigrationActive && st.TotalBytes > 0 {
		base := 5
		if st.DiskTotal > 0 {
			base = 45
		}
		sent := float64(st.TransferredBytes) / float64(st.TransferredBytes+st.RemainingBytes+1)
		pct = base + int(sent*float64(95-base))
	}
	return min(pct, 99)
}

// migrationMessage says how far a migration is, for the task.
func migrationMessage(st hypervisor.MigrationStatus) string {
	var parts []string
	if st.DiskTotal > 0 {
		parts = append(parts, fmt.Sprintf("disks %s of %s copied", api.Size(st.DiskDone), api.Size(st.DiskTotal)))
	}
	if st.State == hypervisor.MigrationActive {
		parts = append(parts, fmt.Sprintf("memory %s sent, %s left, dirtying %s/s, pass %d",
			api.Size(st.TransferredBytes), api.Size(st.RemainingBytes), api.Size(st.DirtyRate), st.Pass))
	}
	if len(parts) == 0 {
		return st.State
	}
	return strings.Join(parts, "; ")
}
