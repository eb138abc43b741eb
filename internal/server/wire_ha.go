package server

import (
	"context"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/ha"
	"github.com/vdc-project/vdc/internal/control/hosts"
	"github.com/vdc-project/vdc/internal/control/hosts/liveness"
	"github.com/vdc-project/vdc/internal/control/maintenance"
	"github.com/vdc-project/vdc/internal/control/tasks"
)

// newHostServices builds host liveness, HA and maintenance on the
// server's state, hosts and placer, and wires what heartbeats tell to
// those who act on it: HA, and migration (the copies no migration waits
// for, orphanCopies).
func (s *Server) newHostServices() {
	s.bus = hosts.NewBus()
	s.liveness = liveness.New(liveness.Deps{State: s.st, Inv: s.inv, Bus: s.bus, Txn: s.leaderTxn,
		HeartbeatInterval: s.cfg.HeartbeatInterval, HostTimeout: s.cfg.HostTimeout, AlarmLevel: alarmLevel, Log: s.log})
	s.ha = ha.New(ha.Deps{State: s.st, Inv: s.inv, Hosts: s.agents, Places: s.places, Tasks: s.submitter, Txn: s.leaderTxn,
		HeartbeatInterval: s.cfg.HeartbeatInterval, Log: s.log})
	s.ha.Subscribe(s.bus)
	hosts.On(s.bus, func(_ context.Context, e hosts.VMsReported) error {
		e.Reply.DropIncoming = append(e.Reply.DropIncoming, s.orphanCopies(e.Host, e.Incoming)...)
		return nil
	})
	s.maintenance = maintenance.New(maintenance.Deps{State: s.st, Inv: s.inv, Places: s.places,
		Migrations: maintenanceMigrations{s}, Log: s.log})
}

// maintenanceMigrations queues the migrations of an evacuation (the
// migration domain's side, migrate.go).
type maintenanceMigrations struct{ s *Server }

// Migrate queues the migration of one VM as a task of its own, a child of
// the evacuation's.
func (m maintenanceMigrations) Migrate(ctx context.Context, t *tasks.Run, vm *api.VM, hostID string) (*api.Task, error) {
	child := tasks.New(ctx, api.OpVMMigrate, vm, vmMigrateParams{Host: hostID})
	child.Owner, child.Parent = t.Task.Owner, t.Task.Metadata.ID
	return m.s.submitter.Submit(ctx, m.s.store.Txn(), child)
}

// validateHA applies a change to a cluster's HA settings (inventory.go).
func (s *Server) validateHA(cur *api.ClusterHA, u *api.ClusterHAUpdate) (*api.ClusterHA, error) {
	return s.ha.ValidateHA(cur, u)
}

// checkHAAdmission is HA admission control for a power-on (vms.go,
// vmtasks.go).
func (s *Server) checkHAAdmission(vm *api.VM, cl *api.Cluster, h *api.Host) error {
	return s.ha.CheckHAAdmission(vm, cl, h)
}

func validateHAPriority(p string) error { return ha.ValidateHAPriority(p) }
