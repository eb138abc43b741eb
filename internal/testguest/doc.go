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
//   - ttyS0 has a root shell.
//
// Its networks, enough to prove a VM network in a test (TestGuestNetworks
// has all of it at work: NICs of each model on taps on bridges, dnsmasq):
//   - Drivers for every NIC model vdc offers: virtio_net, e1000 and 8139cp
//     (QEMU's rtl8139 is an RTL8139C+).
//   - Every NIC gets a DHCP lease in the background, those present at boot
//     and those hot-plugged later: /sbin/vdc-net keeps one busybox udhcpc
//     per NIC, looking once a second, and stops the client of a NIC that
//     was unplugged. A poll rather than uevents: a single process with no
//     concurrency to get wrong, which also repairs what it finds (a client
//     that died, a NIC replaced under the same name), for at most a second
//     of delay on a hot-plug. Each client logs to /var/log/udhcpc-IFACE.log.
//     A lease's default route has metric 100+ifindex (the first NIC's
//     wins); /etc/resolv.conf joins every lease's DNS servers.
//   - Static addressing where no DHCP server answers: run
//     "ip addr add ADDR/LEN dev IFACE" through guest-exec. It stays: the
//     DHCP client only ever removes the address its lease added.
//   - IPv6 is on, with accept_ra and autoconf on every NIC: link-local
//     addresses at once, SLAAC addresses from a router's advertisements
//     (the Debian kernel has IPv6 built in; a kernel without it says "no
//     IPv6" on the console). There is no DHCPv6 client.
//   - The kernel answers ping (IPv4 and IPv6); busybox ping and ip run
//     through guest-exec ("ping -c 3 -W 1 ADDR"), as qga.Client.Exec does.
//   - TCP port 7777 (EchoPort, IPv4 and IPv6) is a line echo: every byte a
//     client sends comes back. Echo is the matching client: a counter that
//     sends numbered lines and counts those lost, duplicated, reordered or
//     held up, across a live migration for instance. An echo rather than a
//     counter in the guest: the client keeps the count and the clock (the
//     guest's stops while a migration pauses it), both directions are
//     exercised, and it needs nothing but busybox: nc -ll -e /bin/cat
//     forks a cat per connection (Debian's busybox has no tcpsvd or
//     inetd), and init restarts nc should it exit.
package testguest
