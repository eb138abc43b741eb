// Package storage is what a VM's storage goes through: snapshots (taking,
// reverting to and deleting them, with the merges of the backing chains a
// delete makes), clones and templates, disks (adding, growing and removing
// them) and the datastores' space (what a VM provisions, the alarm levels
// of a datastore and their events).
//
// storage plans against the inventory and runs its task bodies through
// hosts.Client; it may call retry, state, tasks, hosts, placement and
// inventory, and no other domain package (a clone that powers on queues a
// power task, which the vms package runs). The HTTP layer
// (internal/server) decodes the requests, resolves the VM a path names
// and calls a Service.
package storage
