package dhcp

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"
)

// DHCP message types (option 53).
const (
	dhcpRequest = 3
	dhcpACK     = 5
	dhcpNAK     = 6
)

// renewal is what a server answered a renewal.
type renewal struct {
	kind   byte       // dhcpACK or dhcpNAK
	yiaddr netip.Addr // the address it confirms
	server netip.Addr // option 54
}

// renew sends one DHCPREQUEST as a guest in the RENEWING state does
// (RFC 2131 4.3.2): unicast from its address ip, port 68, to the
// server's address, port 67, with ciaddr set, through the guest's
// kernel and so its ARP cache, and waits up to timeout for the answer.
// busybox udhcpc cannot be used for this: it sends from a socket it
// closes at once, and a quick answer is lost with it.
func renew(t *testing.T, vm *labVM, ip netip.Addr, timeout time.Duration) (renewal, error) {
	t.Helper()
	var conn *net.UDPConn
	err := inNS(vm.ns, func() (err error) {
		conn, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, portClient)))
		return err
	})
	if err != nil {
		return renewal{}, fmt.Errorf("VM %s: listen on %s:68: %w", vm.name, ip, err)
	}
	defer conn.Close()
	xid := rand.Uint32()
	server := net.UDPAddrFromAddrPort(netip.AddrPortFrom(labServer, portServer))
	if _, err := conn.WriteToUDP(requestMsg(xid, ip, vm.mac), server); err != nil {
		return renewal{}, fmt.Errorf("VM %s: send DHCPREQUEST: %w", vm.name, err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 1500)
	for {
		n, _, err := conn.ReadFromUDP(buf)
		if err != nil {
			return renewal{}, fmt.Errorf("VM %s: no answer to a unicast DHCPREQUEST: %w", vm.name, err)
		}
		if r, ok := parseReply(buf[:n], xid); ok {
			return r, nil
		}
	}
}

func requestMsg(xid uint32, ciaddr netip.Addr, mac net.HardwareAddr) []byte {
	m := make([]byte, 240)
	m[0], m[1], m[2] = 1, 1, 6 // BOOTREQUEST, Ethernet, 6-byte MAC
	binary.BigEndian.PutUint32(m[4:], xid)
	copy(m[12:16], ciaddr.AsSlice())
	copy(m[28:34], mac)
	copy(m[236:240], []byte{99, 130, 83, 99}) // magic cookie
	m = append(m, 53, 1, dhcpRequest)
	m = append(m, 61, 7, 1) // client identifier: type 1 and the MAC, as udhcpc sends
	m = append(m, mac...)
	m = append(m, 55, 2, 1, 3) // ask for the netmask and router
	return append(m, 255)
}

func parseReply(m []byte, xid uint32) (renewal, bool) {
	if len(m) < 240 || m[0] != 2 || binary.BigEndian.Uint32(m[4:]) != xid {
		return renewal{}, false
	}
	r := renewal{yiaddr: netip.AddrFrom4([4]byte(m[16:20]))}
	for opts := m[240:]; len(opts) >= 2 && opts[0] != 255; {
		if opts[0] == 0 {
			opts = opts[1:]
			continue
		}
		code, n := opts[0], int(opts[1])
		if len(opts) < 2+n {
			break
		}
		v := opts[2 : 2+n]
		switch {
		case code == 53 && n == 1:
			r.kind = v[0]
		case code == 54 && n == 4:
			r.server = netip.AddrFrom4([4]byte(v))
		}
		opts = opts[2+n:]
	}
	return r, r.kind == dhcpACK || r.kind == dhcpNAK
}

// checkRenewed fails the test unless r acknowledges ip from the server.
func checkRenewed(t *testing.T, r renewal, err error, ip netip.Addr, where string) {
	t.Helper()
	switch {
	case err != nil:
		t.Fatalf("renewal %s: %v", where, err)
	case r.kind != dhcpACK || r.yiaddr != ip || r.server != labServer:
		t.Fatalf("renewal %s: answer %+v, want an ACK of %s from %s", where, r, ip, labServer)
	}
}
