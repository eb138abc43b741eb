package migration

import (
	"testing"

	"github.com/vdc-project/vdc/internal/hypervisor"
)

// What a migration reports, in order, as the task shows it: the percent
// only goes up, to 99 once QEMU is done and the switch-over runs.
func TestMigrationPercentGoesOnlyUp(t *testing.T) {
	for name, reports := range map[string][]hypervisor.MigrationStatus{
		"memory only": {
			{State: hypervisor.MigrationSetup},
			{State: hypervisor.MigrationActive, TotalBytes: 1 << 30, TransferredBytes: 200 << 20, RemainingBytes: 800 << 20},
			{State: hypervisor.MigrationActive, TotalBytes: 1 << 30, TransferredBytes: 900 << 20, RemainingBytes: 100 << 20},
			{State: hypervisor.MigrationCompleted, TotalBytes: 1 << 30, TransferredBytes: 1 << 30},
		},
		"disks, then memory": {
			{State: hypervisor.MigrationSetup},
			{State: hypervisor.MigrationMirroring, DiskTotal: 4 << 30, DiskDone: 1 << 30},
			{State: hypervisor.MigrationMirroring, DiskTotal: 4 << 30, DiskDone: 4 << 30},
			{State: hypervisor.MigrationActive, DiskTotal: 4 << 30, DiskDone: 4 << 30, TotalBytes: 1 << 30, TransferredBytes: 512 << 20, RemainingBytes: 512 << 20},
			{State: hypervisor.MigrationCompleted, DiskTotal: 4 << 30, DiskDone: 4 << 30, TotalBytes: 1 << 30, TransferredBytes: 1 << 30},
		},
		"disks alone": {
			{State: hypervisor.MigrationMirroring, DiskTotal: 4 << 30, DiskDone: 3 << 30},
			{State: hypervisor.MigrationCompleted, DiskTotal: 4 << 30, DiskDone: 4 << 30},
		},
	} {
		last := 0
		for i, st := range reports {
			pct := migrationPercent(st)
			if pct < last || pct > 99 {
				t.Errorf("%s: report %d (%s) gives %d%% after %d%%", name, i, st.State, pct, last)
			}
			last = pct
		}
		if last != 99 {
			t.Errorf("%s: a completed migration shows %d%%", name, last)
		}
	}
}
