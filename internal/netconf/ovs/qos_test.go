package ovs

import "testing"

// ovs-ofctl show as it prints a port-group bridge: a tap with the
// no-flood flag, and LOCAL (the bridge's own port, down) listed after it.
const ofctlShow = `OFPT_FEATURES_REPLY (xid=0x2): dpid:00007a94c4174848
n_tables:254, n_buffers:0
 1(vn3cf865a8b14): addr:36:6c:dc:68:fb:0d
     config:     0
     state:      0
 2(vt9e3e9cd4n0): addr:fe:54:00:83:7e:23
     config:     NO_FLOOD
     state:      0
 LOCAL(vp64e7cb7a75): addr:7a:94:c4:17:48:48
     config:     PORT_DOWN
     state:      LINK_DOWN
OFPT_GET_CONFIG_REPLY (xid=0x4): frags=normal miss_send_len=0
`

func TestParseNoFlood(t *testing.T) {
	got := parseNoFlood(ofctlShow)
	if !got[2] || got[1] || len(got) != 2 {
		t.Fatalf("parseNoFlood = %v; want port 2 no-flood, port 1 not, LOCAL not counted", got)
	}
}
