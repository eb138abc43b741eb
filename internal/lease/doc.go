// Package lease is the guard that keeps a VM from running twice: a lock on
// a file on the VM's datastore that only one running copy can hold.
//
// The lock is an open file description lock (fcntl F_OFD_SETLK): it
// belongs to the open file, not to a process, so the agent takes it and
// hands the open file to the VM's QEMU process (QMP getfd), which holds
// it for as long as it lives, whatever happens to the agent. A host that
// dies, or a QEMU that is killed, lets go of it; a copy that still runs on
// a host cut off from the network keeps it, and the restart of the VM on
// another host is refused. On NFS the lock is an NFS lock, released by the
// server when the dead client's lease expires.
package lease
