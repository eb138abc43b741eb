// Package testguest builds a tiny bootable Linux guest for tests and demos:
// a Debian kernel (the host's own, or linux-image-amd64 fetched with
// apt-get), and an initramfs holding static busybox, the virtio drivers and
// the host's real qemu-guest-agent with its libraries. It boots in about
// three seconds under TCG, so real-QEMU tests need neither KVM nor disks.
//
// Boot it with -kernel Result.Kernel -initrd Result.Initrd -append
// Result.Cmdline+" vdc.hostname=NAME". Kernel is the uncompressed kernel
// booted through its PVH entry point when it could be extracted (SeaBIOS,
// the default firmware, boots it; about two seconds faster than the
// bzImage under TCG); Result.BzImage is the compressed kernel for firmware
// that needs one (OVMF).
//
// In the guest:
//   - qemu-ga serves the virtio-serial port named org.qemu.guest_agent.0
//     and is restarted if it dies; "vdc-test-guest: ready" is printed on
//     ttyS0 once it holds the port. guest-shutdown runs /sbin/shutdown,
//     which powers off (-r reboots, -H halts).
//   - The ACPI power button (QMP system_powerdown) powers off through
//     busybox acpid. A press between button.ko arming the event and acpid
//     listening is caught from the ACPI fixed-event counter. A press before
//     button.ko has armed it ("vdc-test-guest: acpi power button enabled"
//     on the console, a fraction of a second into userspace) is dropped by
//     QEMU itself, for any guest OS: callers wanting a clean stop resend
//     system_powerdown every few seconds until QEMU exits.
//   - eth0 gets a DHCP lease in the background (busybox udhcpc).
//   - ttyS0 has a root shell.
package testguest
