package server

import (
	"context"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/ha"
	"github.com/vdc-project/vdc/internal/control/hosts"
	"github.com/vdc-project/vdc/internal/control/hosts/liveness"
	"github.com/vdc-project/vdc/internal/control/maintenance"
	"github.com/vdc-project/vdc/internal/control/migration"
	"github.com/vdc-project/vdc/internal/control/network"
	"github.com/vdc-project/vdc/internal/control/tasks"
)

// newHostServices builds host liveness, HA and maintenance on the
// server's state, hosts and placer, and wires what heartbeats tell to
// those who act on it: HA, and migration (the copies no migration waits
// for).
func (s *Server) newHostServices() {
	s.bus = hosts.NewBus()
	s.liveness = liveness.New(liveness.Deps{State: s.st, Inv: s.inv, Bus: s.bus, Txn: s.leaderTxn,
		HeartbeatInterval: s.cfg.HeartbeatInterval, HostTimeout: s.cfg.HostTimeout, AlarmLevel: alarmLevel, Log: s.log})
	s.ha = ha.New(ha.Deps{State: s.st, Inv: s.inv, Hosts: s.agents, Places: s.places, Tasks: s.submitter, Txn: s.leaderTxn,
		HeartbeatInterval: s.cfg.HeartbeatInterval, Log: s.log})
	s.ha.Subscribe(s.bus)
	s.network = network.New(network.Deps{State: s.st, Inv: s.inv})
	s.network.Subscribe(s.bus)
	hosts.On(s.bus, func(_ context.Context, e hosts.VMsReported) error {
		e.Reply.DropIncoming = append(e.Reply.DropIncoming, s.migration.OrphanCopies(e.Host, e.Incoming)...)
		return nil
	})
	s.maintenance = maintenance.New(maintenance.Deps{State: s.st, Inv: s.inv, Places: s.places,
		Migrations: maintenanceMigrations{s.migration}, Log: s.log})
}

// maintenanceMigrations queues the migrations of an evacuation.
type maintenanceMigrations struct{ m *migration.Service }

// Migrate queues the migration of one VM as a task of its own, a child of
// the evacuation's.
func (m maintenanceMigrations) Migrate(ctx context.Context, t *tasks.Run, vm *api.VM, hostID string) (*api.Task, error) {
	return m.m.QueueChild(ctx, migration.Child{VM: vm, HostID: hostID, Parent: t.Task})
}
