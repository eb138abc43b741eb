// Package migration moves VMs: live and cold migration between hosts, and
// the motion of their disks between datastores (live on the VM's own host,
// or with the VM to another host).
//
// A request is planned against the inventory before anything moves (the
// VM ready and not being hot-added, the target host connected, out of
// maintenance, in the VM's datacenter, with the same driver and, for a
// running VM, the same hypervisor and room for it; the datastores reached
// and with space): a refused move changes nothing. The vm.migrate task then
// runs one migration value through its phases: prepare the copy on the
// target, start sending, follow, switch over, or abort and undo; a task a
// previous leader left is resumed by what the two hosts say.
//
// migration may call state, tasks, hosts, placement and inventory; nothing
// else. The HTTP layer and the maintenance domain call it (maintenance
// through an interface of its own, adapted by the server).
package migration
