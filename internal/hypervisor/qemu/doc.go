// Package qemu is the hypervisor driver that runs real VMs as QEMU
// processes: KVM when /dev/kvm really works, TCG otherwise. Each VM is one
// qemu-system-x86_64 process in its own session, so it outlives the agent;
// the agent finds it again through its pid file and QMP socket. The driver
// talks to QEMU over QMP (internal/qmp) and to the guest over
// qemu-guest-agent (internal/qga). Its subpackage cmdline builds the
// command lines it runs.
package qemu
