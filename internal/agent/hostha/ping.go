package hostha

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
)

// ping sends one ICMP echo request to addr and reports whether the answer
// came within timeout. It uses a raw socket (root), else the unprivileged
// ICMP datagram socket.
func ping(ctx context.Context, addr string, timeout time.Duration) bool {
	ip := net.ParseIP(addr)
	if ip == nil {
		ips, err := net.DefaultResolver.LookupIP(ctx, "ip4", addr)
		if err != nil || len(ips) == 0 {
			return false
		}
		ip = ips[0]
	}
	ip = ip.To4()
	if ip == nil {
		return false
	}
	var dst net.Addr = &net.IPAddr{IP: ip}
	c, err := icmp.ListenPacket("ip4:icmp", "0.0.0.0")
	if err != nil {
		if c, err = icmp.ListenPacket("udp4", "0.0.0.0"); err != nil {
			return false
		}
		dst = &net.UDPAddr{IP: ip}
	}
	defer c.Close()
	id, seq := rand.IntN(0xffff), rand.IntN(0xffff)
	token := make([]byte, 16)
	binary.BigEndian.PutUint64(token, rand.Uint64())
	binary.BigEndian.PutUint64(token[8:], rand.Uint64())
	msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: seq, Data: token}}
	b, err := msg.Marshal(nil)
	if err != nil {
		return false
	}
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = c.SetDeadline(deadline)
	if _, err := c.WriteTo(b, dst); err != nil {
		return false
	}
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return false
		}
		reply, err := icmp.ParseMessage(1, buf[:n])
		if err != nil || reply.Type != ipv4.ICMPTypeEchoReply {
			continue
		}
		// A raw socket sees every echo reply of the host: ours carries our
		// sequence number and token (the datagram socket rewrites the ID).
		if e, ok := reply.Body.(*icmp.Echo); ok && e.Seq == seq && string(e.Data) == string(token) && sameIP(from, ip) {
			return true
		}
	}
}

func sameIP(a net.Addr, ip net.IP) bool {
	switch a := a.(type) {
	case *net.IPAddr:
		return a.IP.Equal(ip)
	case *net.UDPAddr:
		return a.IP.Equal(ip)
	}
	return false
}

// defaultGateway reads the IPv4 default route's gateway from
// /proc/net/route: what vSphere HA pings by default too.
func defaultGateway() (string, error) {
	f, err := os.Open("/proc/net/route")
	if err != nil {
		return "", err
	}
	defer f.Close()
	return parseDefaultGateway(f)
}

func parseDefaultGateway(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		// Iface Destination Gateway Flags ...; RTF_GATEWAY is 0x2.
		if len(fields) < 4 || fields[1] != "00000000" {
			continue
		}
		// The address as the kernel holds it, printed as a host integer.
		v, err := strconv.ParseUint(fields[2], 16, 32)
		if err != nil || v == 0 {
			continue
		}
		gw := make(net.IP, 4)
		binary.NativeEndian.PutUint32(gw, uint32(v))
		return gw.String(), nil
	}
	return "", errors.New("no default route")
}
