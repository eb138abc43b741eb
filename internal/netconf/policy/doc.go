// Package policy enforces port-group policies on the tap devices of VM
// NICs attached to a Linux bridge: MAC security with nftables (bridge
// family) and traffic shaping with tc. The bridge switch backend calls
// Converge with every port of the host after it has made the taps;
// afterwards the host enforces exactly those ports' policies and nothing
// for taps no longer listed. Converge is idempotent: called again with the
// same ports it changes nothing.
//
// # Security (nftables table "bridge vdc")
//
// vdc owns one table, family bridge, named vdc. Each Converge replaces it
// as a whole in one netlink batch (add, delete, add again with the new
// contents), so a reader never sees half a ruleset and rules of ports no
// longer listed simply vanish. The table holds two base chains at the
// bridge filter priority (-200) with policy accept, each dispatching
// through a verdict map keyed on the tap's name to a chain per port:
//
//	chain prerouting  { iifname vmap @from_vm }   # from-TAP: frames the VM sends
//	chain postrouting { oifname vmap @to_vm }     # to-TAP:   frames sent to the VM
//
// On the wire, per port:
//
//   - AllowForgedTransmits false (the default): a frame the VM sends (it
//     enters the bridge from the tap) whose Ethernet source address is not
//     the port's MAC is dropped and counted (chain from-TAP: ether saddr !=
//     MAC counter drop). The VM cannot pose as another station, whatever
//     the frame carries (IPv4, IPv6, ARP, VLAN-tagged). True: its frames
//     pass whatever their source.
//   - AllowMACChanges and AllowPromiscuous both false (the default): a
//     unicast frame (group bit of the destination clear) that the bridge
//     sends to the tap and whose destination is not the port's MAC is
//     dropped and counted (chain to-TAP). A guest that changed its MAC, or
//     put its NIC in promiscuous mode, receives no unicast but its own:
//     in particular not the unknown-unicast floods a Linux bridge sends to
//     every port. Broadcast and multicast always pass, so ARP, IPv6 NDP
//     (solicited-node multicast, unicast advertisements to the port's own
//     MAC), router advertisements, MLD and DHCP work unchanged; nothing
//     here looks at IP headers, so IPv4 and IPv6 are treated alike.
//   - AllowMACChanges or AllowPromiscuous true: no filter on frames to the
//     VM. The port receives what the bridge forwards to it: floods, and
//     unicast for MACs the bridge learned behind it. A Linux bridge has no
//     port that sees all traffic (vSphere's promiscuous port), so
//     AllowPromiscuous cannot give more than that.
//
// Frames are filtered on Ethernet addresses only: ARP or NDP payloads that
// lie about IP-to-MAC bindings are not inspected.
//
// # Shaping (tc)
//
// Shapes are token buckets (tbf): AverageBitsPerSec is the long-term rate,
// BurstBytes how much may pass above it after the port was idle (default:
// the larger of 64 KiB and 10 ms at the average rate, and never less than
// one full frame at the tap's MTU), and PeakBitsPerSec, when set, the rate
// at which such a burst may pass (a second bucket of one frame; equal to the
// average it forbids bursts above the average). Rates count whole Ethernet
// frames (header included, no FCS or preamble). Frames beyond the bucket
// wait in a queue (the burst plus 50 ms at the average rate) and are
// dropped when it is full, so TCP sees queueing and loss, not a hard policer.
//
//   - In (towards the VM): a tbf qdisc at the root of the tap (its egress),
//     handle 7664:.
//   - Out (from the VM): the tap's ingress qdisc redirects every frame with
//     a u32 match-all filter (priority 30308) and mirred to an ifb device,
//     named IfbName(tap) and aliased after the tap, whose root holds the
//     tbf; the ifb then hands the frames back to the bridge as if they came
//     from the tap, so the security rules still see them. (This kernel has
//     no police action, so a policer on the ingress qdisc is not an option;
//     the ifb also queues, as In does, rather than dropping at once.)
//
// A zero Shape (AverageBitsPerSec 0) is unlimited: Converge removes the
// qdiscs, the filter and the ifb it made for that direction, and leaves
// qdiscs it did not make alone. A changed Shape changes the qdisc in place
// (tc replace on the same handle), so its counters and queue survive.
//
// Calls are serialised within the process; the namespace is the caller's
// (0 for the current one).
package policy
