// Package hypervisortest is the conformance suite for hypervisor.Driver.
// Every driver (sim, qemu) runs it from its own tests through a Harness, so
// that the agent can rely on one behaviour whichever driver a host uses:
// power-state transitions and their errors, guest shutdown with
// notification, and VMs that survive a restart of the agent process.
//
// A driver that also has a Close method (io.Closer) is closed where the suite
// models the agent process dying, and must leave its VMs running when it is.
package hypervisortest
