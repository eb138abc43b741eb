package ovs

import (
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"strings"
)

// Names of what the backend makes in Open vSwitch. Each is at most
// netconf.MaxNameLen characters (bridges' internal ports are kernel
// devices) and depends only on its input, so a restarted agent finds
// them. Taps are named by the agent (netconf.TapName).

// BridgeName is the OVS bridge of a port group: "vp" and 10 hex digits
// of the SHA-256 of the port group's ID.
func BridgeName(portGroupID string) string { return "vp" + hash(portGroupID, 10) }

// UplinkBridgeName is the OVS bridge holding a set of uplinks (in
// failover order): "vu" and 10 hex digits.
func UplinkBridgeName(uplinks []string) string { return "vu" + hash(strings.Join(uplinks, ","), 10) }

// TunnelName is the VXLAN port of a port group towards one peer: "vn"
// and 11 hex digits of the port group ID and the peer's address.
func TunnelName(portGroupID string, peer netip.Addr) string {
	return "vn" + hash(portGroupID+"\x00"+peer.String(), 11)
}

// PatchNames are the two ends of the patch joining a VLAN port group's
// bridge to its uplink bridge: "vq" (in the port group's bridge) and
// "vr" (in the uplink bridge, tagged with the VLAN), and 10 hex digits.
func PatchNames(portGroupID string) (pgEnd, uplinkEnd string) {
	h := hash(portGroupID, 10)
	return "vq" + h, "vr" + h
}

// bondName is the bond port of an uplink bridge with several uplinks.
func bondName(uplinkBridge string) string { return uplinkBridge + "b" }

func hash(s string, digits int) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:digits]
}
