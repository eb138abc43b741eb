// Package qemu is the hypervisor driver that runs real VMs as QEMU
// processes: KVM when /dev/kvm really works, TCG otherwise. Each VM is one
// qemu-system-x86_64 process in its own session, so it outlives the agent;
// the agent finds it again through its pid file and QMP socket. The driver
// talks to QEMU over QMP (internal/qmp) and to the guest over
// qemu-guest-agent (internal/qga).
//
// # Layers
//
// This package is the Driver and its vm type: one VM's QEMU process, its
// power state, its QMP event loop, its lease, its migrations out and in,
// and the operations that change those (start, stop, attach, hot-add,
// disk hot-plug). All of that state is read and written under the vm's
// one lock, in step with QMP events and the process's exit, so it stays
// here. What does not need it lives in subpackages, each told only what it
// needs:
//
//   - cmdline builds the command lines (pure, golden-tested).
//   - proc is the process seen from outside: runtime paths, the state file
//     kept between agent processes, finding, watching, killing and
//     dialling a QEMU an earlier agent may have started.
//   - blockjob, migration and hotadd are QMP steps with no state, over a
//     one-method Monitor the vm implements (vm.Execute): block nodes and
//     block jobs; migration parameters, streams and the Job record of a
//     migration; plugging vCPUs and DIMMs and onlining them in the guest.
//   - diskfile (qemu-img: making, sizing, measuring disk files), seed
//     (the cloud-init ISO) and kvmprobe (does KVM really run guests) touch
//     no QEMU of a VM at all.
//   - guestagent watches a VM's guest agent: a type with its own state and
//     lock (taken after the vm's, never before), told by the vm when its
//     guest starts, resets or goes.
//   - storage holds whole disk operations (snapshots, copies, journalled
//     merges, disk moves) written against storage.VM, the dozen methods
//     they need of a vm, rather than against the vm type: sharing the vm's
//     state with them would have split its lock.
package qemu
