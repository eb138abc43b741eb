// Package ovs is the netconf backend on Open vSwitch (Debian's
// openvswitch-switch), the pluggable-switch case: the desired state the
// bridge backend realizes with Linux bridges, realized by an OVS of
// vdc's own, driven with ovs-vsctl, ovs-ofctl and ovs-appctl against
// that OVS's sockets.
//
// # Daemons
//
// Each backend has a directory (Options.Dir, e.g. <agent data>/ovs)
// holding its database (conf.db), the database socket (db.sock), the
// daemons' pid files, control sockets (ovs-vswitchd.ctl), bridge
// management sockets (BRIDGE.mgmt, OVS_RUNDIR points there) and logs.
// Converge finds the directory's ovsdb-server and ovs-vswitchd running
// (pid file, process name, same network namespace, answering) and uses
// them; it starts those that are not, with --detach: inside the
// backend's network namespace (ovs-vswitchd sees that namespace's
// devices and routes), in a session of their own, no child of the agent,
// so they outlive it and a restarted agent adopts them untouched. A
// directory whose daemons run in another namespace is refused (it is
// another host's), and so is starting an ovs-vswitchd where another one
// already runs in the namespace. StopDaemons stops them (tests, teardown).
//
// Bridges get the kernel datapath (datapath_type=system) when the kernel
// answers for the openvswitch module, else the userspace one (netdev),
// where ovs-vswitchd forwards every frame itself: this machine has no
// module, so the netdev datapath is the one tested here.
//
// # Layout
//
// One OVS bridge per port group (BridgeName, "vp..."), fail_mode secure:
// a bridge that lost its flows (ovs-vswitchd restarted) forwards nothing
// until Converge has put its policies back. A bridge per port group
// rather than one per switch keeps every port group its own L2 domain by
// construction: VXLAN port groups need no internal VLAN numbers to keep
// their floods apart, every port group's policy flows are written for
// one domain (FLOOD means "this port group"), and moving a port between
// port groups is moving it between bridges.
//
//   - Taps: the port's persistent tap (package tap), with vdc's alias
//     and device group, is a system port of its port group's bridge
//     (OVS reads it with AF_PACKET in the userspace datapath); QEMU opens
//     it by name.
//   - VXLAN port groups: a tunnel port per peer (TunnelName, "vn..."),
//     type vxlan with remote_ip, local_ip (the switch's LocalIP), key
//     (the VNI) and dst_port 4789, kept exactly in sync with the peers;
//     NORMAL floods to every tunnel (head-end replication) and learns
//     MACs behind them.
//   - VLAN port groups: a patch (PatchNames, "vq..." in the port group's
//     bridge, "vr..." in the uplink bridge) whose uplink-bridge end has
//     tag=VLAN; the uplink there is the trunk. OVS tags in both datapaths,
//     so VLANs need no 8021q.
//   - Uplink bridges (UplinkBridgeName, "vu...", fail_mode standalone):
//     the switch's uplinks (Uplinks, else the interface holding LocalIP)
//     as one port, or an active-backup bond of several (the first is the
//     bond's primary: preferred whenever it has carrier; the order of the
//     others is not kept), and the bridge's internal port, which takes
//     only untagged frames (trunks=0) and wears the first uplink's MAC.
//     Two switches on the same interfaces share one; an interface in two
//     different sets is refused.
//
// # What the uplink bridge changes on the host
//
// With the userspace datapath, VXLAN packets must leave through an OVS
// bridge that the route to the peer goes through: the tunnel endpoint
// must be on an OVS internal port ("br-phy"). So, for a switch with
// VXLAN port groups, the uplink bridge's internal port takes the
// uplinks' global addresses (link-local ones stay) and the main-table
// routes through them that the kernel did not make for an address
// (default routes included), and is set up; the host's own traffic
// (the agent's heartbeats, migrations) then goes through ovs-vswitchd.
// What moved is recorded first in the bridge's external_ids (vdc-moved),
// so that any later Converge gives it back: when the last switch that
// needs the move goes, the uplinks get their addresses and routes back
// before the bridge is removed. With the kernel datapath an interface in
// an OVS bridge no longer delivers to the host's stack at all, so its
// addresses move whenever it is an uplink bridge's (VLAN port groups);
// VXLAN there goes through the kernel's routing and needs no uplink
// bridge. With the userspace datapath and VLAN port groups only,
// addresses stay where they are (OVS only sees copies of the frames).
//
// # Policies
//
// Each port group bridge's flow table is vdc's as a whole (cookie
// 0x766463), replaced only when it differs:
//
//	table 0 (from taps): dl_src=MAC -> goto 1; other sources: drop, unless
//	        forged transmits are allowed; meter:N first when Out is shaped
//	table 1: NORMAL (MAC learning); broadcast and multicast also output
//	        to the guarded taps (below)
//	table 2: frames from a forged source of a tap that may forge but
//	        must not receive others' unicast: FLOOD without learning, so
//	        that unicast to that source does not come back to the tap
//
// Per policy:
//
//   - Forged transmits (AllowForgedTransmits false): a frame from a tap
//     whose source is not the port's MAC is dropped.
//   - MAC changes / promiscuous (both false, "guarded"): the tap is
//     no-flood (OpenFlow port flag), so NORMAL's floods, unknown unicast
//     above all, pass it by; it gets broadcast and multicast from table 1
//     and unicast to its MAC through a static MAC entry (fdb/add), which
//     also works before the guest has sent anything and which nothing
//     else can take over.
//   - Out (from the VM): an OpenFlow meter (ID: the tap's OpenFlow port)
//     with one drop band at the average rate and the burst (default: the
//     larger of 64 KiB and 10 ms at the rate); a policer, it drops rather
//     than queues. Interface ingress_policing_rate, OVS's usual answer,
//     needs the kernel's police action, which this kernel lacks (and the
//     userspace datapath reads taps before tc's ingress).
//   - In (towards the VM): a linux-htb QoS of one queue at the average
//     rate, on the tap: the kernel's htb on the tap, in either datapath
//     (OVS hands the tap its frames through its queueing discipline).
//     OVS's egress-policer exists for DPDK ports only.
//   - Peak rates are not enforced (a meter band and an htb class have a
//     rate and a burst, no second bucket).
//
// # Ownership
//
// Every OVS record the backend makes carries external_ids:vdc-owner=ovs
// (and vdc-portgroup, vdc-switch, vdc-peer, vdc-uplinks, vdc-role saying
// what for); every kernel device it makes or names (taps, bridges'
// internal ports) carries the alias "vdc/ovs: ...". Converge removes
// exactly those that the desired state no longer holds and never touches
// other records or devices; a vdc bridge that holds a port vdc did not
// make stays, emptied of vdc's ports. QoS and Queue records of vdc's
// that no port uses are destroyed.
//
// # Userspace datapath and QEMU
//
// The userspace datapath forwards what it reads from a tap as it is: a
// frame whose checksum a guest left to offloading (virtio-net with
// vnet_hdr) or a TSO super-frame is not fixed up, and is dropped or
// corrupt on the way. A VM on a netdev-datapath host must run its NIC's
// tap without vnet_hdr (QEMU -netdev tap,...,vnet_hdr=off; see
// Backend.TapOffloads).
package ovs
