package dhcp

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
)

// Files in a service's directory.
const (
	pidFile     = "dnsmasq.pid"
	leaseFile   = "dnsmasq.leases"
	logFile     = "dnsmasq.log"
	hostsFile   = "hosts"         // the bindings: dnsmasq's dhcp-hostsfile
	appliedFile = "hosts.applied" // "PID SHA256": the bindings that dnsmasq has read
	stateFile   = "state.json"    // what Converge changed on the host for the service
	confPrefix  = "dnsmasq-"      // + 12 hex digits of the configuration's SHA-256 + ".conf"
	confSuffix  = ".conf"
)

// files is what a service's dnsmasq runs with.
type files struct {
	conf     string // path of the configuration file, named after its content
	confText []byte
	hosts    []byte
}

// render makes a service's dnsmasq configuration and bindings. The
// configuration's name carries a hash of its content, and dnsmasq's
// command line carries the name: a running dnsmasq whose command line
// names another file runs an old configuration and must be restarted
// (dnsmasq re-reads only its bindings on SIGHUP). The bridge's ifindex
// is part of the content: a bridge deleted and made again is another
// device, and a dnsmasq bound to the old one hears nothing.
func render(dir string, s Service, ifindex int) files {
	conf := renderConf(dir, s, ifindex)
	sum := sha256.Sum256(conf)
	return files{
		conf:     filepath.Join(dir, confPrefix+hex.EncodeToString(sum[:6])+confSuffix),
		confText: conf,
		hosts:    renderHosts(s.Bindings),
	}
}

func renderConf(dir string, s Service, ifindex int) []byte {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	line("# DHCP service of port group %s on bridge %s (ifindex %d).", s.PortGroup, s.Bridge, ifindex)
	line("# Written by vdc (internal/netconf/dhcp); changes are overwritten.")
	line("# No DNS: this dnsmasq is a DHCP server only.")
	line("port=0")
	line("no-resolv")
	line("no-hosts")
	line("# Only the port group's bridge: one interface and bind-interfaces make")
	line("# dnsmasq bind its DHCP socket to the bridge (SO_BINDTODEVICE), so that")
	line("# the dnsmasqs of several port groups on one host do not hear each other.")
	line("interface=%s", s.Bridge)
	line("except-interface=lo")
	line("bind-interfaces")
	line("# Root, because the files live in the agent's private directory: an")
	line("# unprivileged dnsmasq could not re-read the bindings on SIGHUP.")
	line("user=root")
	line("pid-file=%s", filepath.Join(dir, pidFile))
	line("log-facility=%s", filepath.Join(dir, logFile))
	if s.Subnet.IsValid() {
		renderDHCP4(line, dir, s)
	}
	if s.Prefix6.IsValid() {
		renderRA(line, s)
	}
	return []byte(b.String())
}

func renderDHCP4(line func(string, ...any), dir string, s Service) {
	lease := s.LeaseSeconds
	if lease == 0 {
		lease = DefaultLeaseSeconds
	}
	mask := net.IP(net.CIDRMask(s.Subnet.Bits(), 32)).String()
	line("# The server's address is a /32 on the bridge: the netmask says which")
	line("# subnet it serves; static: only the bindings' addresses are handed out.")
	line("dhcp-range=%s,static,%s,%d", s.Subnet.Addr(), mask, lease)
	line("dhcp-hostsfile=%s", filepath.Join(dir, hostsFile))
	line("# A MAC without a binding is another host's VM, or no VM: no answer.")
	line("dhcp-ignore=tag:!known")
	line("dhcp-authoritative")
	line("dhcp-lease-max=%d", max(1000, 2*len(s.Bindings)))
	line("dhcp-leasefile=%s", filepath.Join(dir, leaseFile))
	if s.Router.IsValid() {
		line("dhcp-option=option:router,%s", s.Router)
	} else {
		line("# No router: an empty option keeps dnsmasq from offering itself.")
		line("dhcp-option=option:router")
	}
	if dns := addrsOf(s.DNS, true); len(dns) > 0 {
		line("dhcp-option=option:dns-server,%s", joinAddrs(dns, ""))
	}
	if s.MTU > 0 {
		line("dhcp-option=option:mtu,%d", s.MTU)
	}
}

// renderRA advertises Prefix6 for SLAAC only (ra-only: no DHCPv6), every
// raInterval seconds and to each router solicitation, with router
// lifetime 0: the host is no router. dnsmasq finds the prefix's context
// by the bridge's address in it (ServerIP6).
func renderRA(line func(string, ...any), s Service) {
	line("# IPv6: router advertisements of %s for SLAAC, from the bridge's", s.Prefix6)
	line("# link-local address; router lifetime 0: this host is not a router.")
	line("enable-ra")
	line("dhcp-range=%s,ra-only,%d", s.Prefix6.Addr(), s.Prefix6.Bits())
	mtu := "off"
	if s.MTU > 0 {
		mtu = fmt.Sprint(s.MTU)
	}
	line("ra-param=%s,mtu:%s,%d,0", s.Bridge, mtu, raInterval)
	if dns := addrsOf(s.DNS, false); len(dns) > 0 {
		line("dhcp-option=option6:dns-server,%s", joinAddrs(dns, "[]"))
	}
}

// raInterval is how often, in seconds, the advertisements are sent
// unsolicited.
const raInterval = 10

// addrsOf picks the IPv4 (v4) or IPv6 addresses of as.
func addrsOf(as []netip.Addr, v4 bool) []netip.Addr {
	var out []netip.Addr
	for _, a := range as {
		if a.Is4() == v4 {
			out = append(out, a)
		}
	}
	return out
}

// renderHosts is the dhcp-hostsfile: "MAC,IP[,hostname]" per binding,
// in address order so that the same bindings make the same file.
func renderHosts(bs []Binding) []byte {
	bs = slices.Clone(bs)
	slices.SortFunc(bs, func(a, b Binding) int { return a.IP.Compare(b.IP) })
	var b strings.Builder
	for _, x := range bs {
		b.WriteString(strings.ToLower(x.MAC.String()) + "," + x.IP.String())
		if x.Hostname != "" {
			b.WriteString("," + x.Hostname)
		}
		b.WriteByte('\n')
	}
	return []byte(b.String())
}

// joinAddrs lists addresses for dnsmasq, each in brackets[0] and
// brackets[1] when given (IPv6 options are written [ADDR]).
func joinAddrs(as []netip.Addr, brackets string) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
		if brackets != "" {
			s[i] = brackets[:1] + s[i] + brackets[1:]
		}
	}
	return strings.Join(s, ",")
}
