// Package dhcp runs the optional DHCP service of port groups on a host,
// so that a guest gets its address with no manual setup.
//
// # Distributed: every host answers for its own VMs
//
// The service is not run by one host for the whole network but by every
// host, each answering only the VMs it runs, as OVN's distributed DHCP
// does. There is no single point of failure (a host that dies takes no
// other host's guests' DHCP with it) and nothing to fail over: after a
// live migration or an HA restart the VM's new host already answers its
// renewals. This works because the server, not the host, decides the
// addresses: it allocates each NIC's address once (a Binding, fixed per
// NIC), and each host's agent passes Converge the bindings of the VMs it
// runs, so a VM gets the same address from whichever host serves it.
// A host ignores every other MAC (dnsmasq's dhcp-ignore=tag:!known):
// another host's VM is that host's to answer.
//
// # What runs
//
// One dnsmasq per Service (Debian's dnsmasq-base: the binary without
// the system service), DHCP only (port=0: no DNS), bound to the port
// group's bridge (interface=, bind-interfaces: its DHCP socket is bound
// to the bridge, so the dnsmasqs of several port groups do not hear
// each other), dhcp-range=SUBNET,static (only the bindings' addresses
// are handed out, from a dhcp-hostsfile), authoritative. Its files live
// in runDir/PORTGROUP/: the configuration (dnsmasq-HASH.conf, named
// after its content), hosts (the bindings), dnsmasq.pid,
// dnsmasq.leases, dnsmasq.log (rotated past 4 MiB), state.json (what
// Converge changed on the host, to undo it) and hosts.applied (which
// bindings the running dnsmasq has read).
//
// dnsmasq daemonizes: it runs in its own session as a child of init and
// outlives the agent, like the VMs. A new agent process adopts it: the
// pid file names it and /proc/PID/cmdline must show dnsmasq with the
// service's configuration, so a dead server or a reused pid is told
// apart from a live server and a second one is never started. Changed
// bindings are written to the hosts file atomically (rename) and
// dnsmasq re-reads them on SIGHUP, keeping its process and leases; a
// changed configuration (subnet, options, lease time, another bridge
// device) restarts it, and the lease file carries the leases over. A
// dnsmasq that died is started again by the next Converge; one whose
// service is no longer wanted is stopped and its directory removed.
//
// # The server's address and MAC on the bridge
//
// The server answers from ServerIP, the same address on every host, so
// a VM's unicast renewals reach whichever host runs it. It is put on
// the bridge as a /32, with no route to the subnet: dnsmasq is told the
// subnet's netmask in dhcp-range (the /32 alone would not say which
// subnet the bridge serves) and replies through the bridge it is bound
// to, which needs no route. A prefix route would make the host a member
// of the guests' network: it would route to it, clash with a host
// network of the same prefix, and forbid two port groups from using
// the same subnet on one host, which tenants do.
//
// The bridge also gets ServerMAC(PortGroup), the same MAC on every
// host: a guest that moved keeps the server's MAC in its ARP cache, and
// its unicast renewal, sent to that MAC, reaches the new host's server
// at once rather than after its ARP entry expires. The bridge's own MAC
// is recorded and given back when the service goes. Reverse-path
// filtering is turned off on the bridge, since the host has no route
// to the guests (a strict net.ipv4.conf.all.rp_filter is logged, as it
// overrides that).
//
// # Keeping the server host-local (nftables tables "vdc-dhcp")
//
// Every host answers from the same address (and MAC) on a network that
// spans hosts: a VXLAN port group's bridge also holds the VXLAN device,
// a VLAN port group's the uplink's sub-interface. Without rules a host
// would hear other hosts' VMs and answer them, and its VMs would hear
// every host's server. Converge replaces three tables named vdc-dhcp in
// one netlink batch (the kernel applies it whole or not at all), each
// dispatching through verdict maps to a chain per service:
//
//	bridge vdc-dhcp  prerouting: a frame entering the bridge from a port
//	                 off the host, postrouting: one leaving through such
//	                 a port: any frame from or to ServerMAC, DHCP (UDP
//	                 port 67 or 68), ARP from or for ServerIP, and IPv4
//	                 from or to ServerIP are dropped.
//	inet vdc-dhcp    input (iifname = the bridge): only DHCP requests
//	                 (UDP to port 67) and, with Prefix6, router
//	                 solicitations and neighbour discovery are taken in;
//	                 output (oifname): only DHCP answers from ServerIP,
//	                 port 67, and router advertisements and neighbour
//	                 discovery go out; forward: nothing is routed to or
//	                 from the bridge.
//	arp vdc-dhcp     input: only ARP for ServerIP; output: only ARP
//	                 from ServerIP.
//
// A port off the host is any port of the bridge whose name does not
// start with "vt" (VM taps): VXLAN devices "vx...", VLAN sub-interfaces
// "vl...". The bridge table matches them by name, as listed when
// Converge runs plus the port group's VXLAN and VLAN device names as
// the bridge backend makes them (netconf.VXLANName, VLANName), so a
// tunnel made later is covered already; any other port added later is
// covered by the next Converge. (Matching a frame's bridge by name,
// meta ibrname, needs nft_meta_bridge, which kernels without
// CONFIG_NFT_BRIDGE_META lack.) The host-side rules match the bridge
// itself, the device the host's IP stack sees the frames on; with
// br_netfilter, frames bridged between two ports also pass the inet
// forward hook, from the bridge to itself, and are let through.
//
// So no host hears another host's server or answers another host's
// VMs, and the host offers its VMs nothing but DHCP: no service of the
// host's is reachable at ServerIP, no routing through it, not even an
// answer to ping. Drops are counted (nft list table bridge vdc-dhcp).
// The policy package's table ("bridge vdc") is left alone. On a port
// group with this service, DHCP does not cross hosts at all: a DHCP
// server in a guest reaches only the VMs of its own host.
//
// # IPv6: router advertisements for SLAAC
//
// With Prefix6 the same dnsmasq also advertises the prefix (enable-ra,
// ra-only: SLAAC, no DHCPv6) every 10 seconds and to each router
// solicitation, with router lifetime 0: guests make their addresses from
// it and route it on-link, but take a default route only from a real
// router on the port group. The bridge gets two addresses, both with
// ServerMAC's interface identifier (ServerIP6) and without duplicate
// address detection, since every host has them: the link-local one the
// advertisements come from, and one in Prefix6 as a /64 with no prefix
// route, by which dnsmasq knows the prefix is the bridge's (the host is
// not on the guests' network). The rules above keep both host-local, as
// for IPv4: nothing from or to ServerMAC crosses a port off the host.
// A service may serve IPv6 only (no Subnet). DHCPv6 is not offered:
// guests' addresses come from their MACs, the same on every host.
//
// Calls are serialised within the process; the namespace is the
// caller's (0 for the current one).
package dhcp
