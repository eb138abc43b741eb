// Package hypervisor defines what a host agent needs from a virtualization
// driver: a small required interface (Driver) and optional capability
// interfaces added by later features. Implementations live in subpackages
// (sim, qemu); hypervisortest is the conformance suite every driver passes.
package hypervisor
