// Package bench holds vdc's benchmarks, run by `vdc bench api|boot|ha|
// migrate|storage`. Each starts a real datacenter on this machine (a `vdc
// server` and `vdc agent` processes of the running binary, as `vdc up`
// does) and measures through the REST API, against plain QEMU, qemu-img
// and cp where there is a baseline:
//
//   - API: creates, power-ons and full lists of many VMs on sim hosts, and
//     the server's memory;
//   - Boot: VM start to the first guest-agent answer, vdc vs a bare QEMU
//     command line, and the agent's memory with VMs running;
//   - HA: the failover of the VMs of killed sim hosts, detection included;
//   - Migrate: live migration time and downtime, vdc (TLS and insecure) vs
//     plain QEMU over QMP, idle and memory-dirtying guests;
//   - Storage: linked clones of small and large bases, full clone
//     throughput vs qemu-img convert and cp --sparse, a fresh thin disk.
//
// docs/PERFORMANCE.md records their numbers and how to reproduce them.
// Progress goes to the Progress writer of each benchmark's options; the
// result types are what `vdc bench ... -o json` prints.
//
// The package uses client (the REST API), agent (to hand agents their
// join token), testguest, pki, qmp, qga and the qemu driver's QEMU checks;
// nothing imports it but the CLI's bench commands.
package bench
