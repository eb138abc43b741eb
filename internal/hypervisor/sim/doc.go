// Package sim is a simulated hypervisor: a hypervisor.Driver that runs no
// guests but models them well enough for scale tests (thousands of VMs on one
// machine), what-if planning and demos, without QEMU or root.
//
// It is a product feature, not a test fake, and passes the same conformance
// suite (hypervisortest) as the qemu driver. What it models:
//
//   - Power state per VM, kept in a JSON file in the VM's directory, so that a
//     VM that was on when the agent died is still on when a new agent
//     attaches — the same promise the qemu driver keeps with real processes.
//   - Guest boot time (Options.BootDelay) and ACPI shutdown time
//     (Options.ShutdownDelay). A shutdown that was requested before the agent
//     died completes on schedule even though nobody watched it.
//   - Guests that ignore ACPI (the label LabelIgnoreACPI), so that callers can
//     exercise their shutdown-timeout-then-power-off path.
//   - Live migration between sim hosts (hypervisor.Migrator): its duration,
//     passes and downtime from the VM's memory size, its guest's dirty rate
//     (LabelDirtyRate), the data on its disks (LabelDiskUsed), bandwidth,
//     downtime limit, auto-converge and compression, as in QEMU's pre-copy
//     migration; see model.go. Disk moves likewise.
//   - Storage (hypervisor.Storage): snapshots, reverts, merges, copies and
//     disks added, grown and removed, on a table of the files each VM would
//     have and what they hold (storage.go): thin disks hold their share of
//     LabelDiskUsed, thick ones their size, overlays start empty, so linked
//     clones are made in constant time and full copies take their bytes
//     over the model's bandwidth.
//
// Sim never creates disk files or network devices: disks are modeled,
// NICs accounted for in the definition.
package sim
