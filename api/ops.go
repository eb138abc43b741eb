package api

// Operations: the Op of a task, as GET /api/v1/tasks lists it.
const (
	OpVMCreate             = "vm.create"
	OpVMDelete             = "vm.delete"
	OpHostMaintenanceEnter = "host.maintenance.enter"
	OpDiskAdd              = "vm.disk.add"
	OpDiskRemove           = "vm.disk.remove"
	OpDiskResize           = "vm.disk.resize"
	OpHostFailover         = "host.failover"
	OpHostJoin             = "host.join"
	OpHostRenew            = "host.renew-certificate"
	OpHostReplace          = "host.replace"
	OpImageImport          = "image.import"
	OpSnapshotCreate       = "vm.snapshot.create"
	OpSnapshotDelete       = "vm.snapshot.delete"
	OpSnapshotRevert       = "vm.snapshot.revert"
	OpVMClone              = "vm.clone"
	OpVMExport             = "vm.export"
	OpVMHAReset            = "vm.ha-reset"
	OpVMHARestart          = "vm.ha-restart"
	OpVMHotAdd             = "vm.hot-add"
	OpVMImport             = "vm.import"
	OpVMIsolation          = "vm.isolation-response"
	OpVMMigrate            = "vm.migrate"
	OpVMMove               = "vm.move"
)

// OpVMPower is the Op of a power action's task: "vm.power.start".
func OpVMPower(action string) string { return "vm.power." + action }
