package dhcp

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/netconf"
)

// portGroupRE is what a port group ID may look like to name a directory
// (IDs are UUIDs; this keeps "..", "/" and hidden names out).
var portGroupRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// labelRE is one DNS label of a hostname (RFC 1123).
var labelRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)

func validateAll(runDir string, want []Service) error {
	if runDir == "" {
		return fmt.Errorf("no run directory: %w", api.ErrInvalid)
	}
	var errs []error
	pgs, bridges := map[string]bool{}, map[string]string{}
	for _, s := range want {
		if err := Validate(s); err != nil {
			errs = append(errs, err)
			continue
		}
		if pgs[s.PortGroup] {
			errs = append(errs, fmt.Errorf("port group %s: listed twice: %w", s.PortGroup, api.ErrInvalid))
		}
		pgs[s.PortGroup] = true
		if other, ok := bridges[s.Bridge]; ok {
			errs = append(errs, fmt.Errorf("port groups %s and %s: both on bridge %s: %w", other, s.PortGroup, s.Bridge, api.ErrInvalid))
		}
		bridges[s.Bridge] = s.PortGroup
	}
	return errors.Join(errs...)
}

// Validate says whether a service can be run: an IPv4 subnet holding
// the server's, the router's and every binding's address (none of them
// the network or broadcast address, none twice), or an IPv6 /64 to
// advertise, or both; unicast MACs listed once, valid hostnames, and an
// MTU and lease time DHCP can carry.
func Validate(s Service) error {
	if err := validateService(s); err != nil {
		return fmt.Errorf("DHCP service of port group %q: %w", s.PortGroup, err)
	}
	return nil
}

func validateService(s Service) error {
	if !portGroupRE.MatchString(s.PortGroup) {
		return fmt.Errorf("port group ID must be 1 to 128 letters, digits, '.', '_' or '-': %w", api.ErrInvalid)
	}
	if err := netconf.ValidName(s.Bridge); err != nil {
		return fmt.Errorf("bridge: %w", errors.Join(err, api.ErrInvalid))
	}
	switch {
	case !s.Subnet.IsValid() && !s.Prefix6.IsValid():
		return fmt.Errorf("neither an IPv4 subnet nor an IPv6 prefix to serve: %w", api.ErrInvalid)
	case s.Subnet.IsValid():
		if err := validateSubnet(s); err != nil {
			return err
		}
	case s.ServerIP.IsValid() || s.Router.IsValid() || len(s.Bindings) > 0:
		return fmt.Errorf("an IPv4 server, router or bindings but no IPv4 subnet: %w", api.ErrInvalid)
	}
	if s.Prefix6.IsValid() {
		if err := validatePrefix6(s.Prefix6); err != nil {
			return err
		}
	}
	if s.MTU != 0 && (s.MTU < 68 || s.MTU > 65535) {
		return fmt.Errorf("MTU %d is outside 68..65535: %w", s.MTU, api.ErrInvalid)
	}
	if s.LeaseSeconds != 0 && (s.LeaseSeconds < MinLeaseSeconds || s.LeaseSeconds > 1<<31-1) {
		return fmt.Errorf("lease time %ds is outside %d..%d seconds: %w", s.LeaseSeconds, MinLeaseSeconds, 1<<31-1, api.ErrInvalid)
	}
	for _, d := range s.DNS {
		switch {
		case d.IsUnspecified() || d.IsMulticast() || d.Is4In6():
			return fmt.Errorf("DNS server %s is not a unicast address: %w", d, api.ErrInvalid)
		case d.Is4() && !s.Subnet.IsValid():
			return fmt.Errorf("DNS server %s is IPv4 but no IPv4 subnet is served: %w", d, api.ErrInvalid)
		case d.Is6() && !s.Prefix6.IsValid():
			return fmt.Errorf("DNS server %s is IPv6 but no IPv6 prefix is advertised: %w", d, api.ErrInvalid)
		}
	}
	return validateBindings(s)
}

func validateSubnet(s Service) error {
	p := s.Subnet
	switch {
	case !p.Addr().Is4():
		return fmt.Errorf("subnet %s: only IPv4 subnets get DHCP (an IPv6 prefix is advertised for SLAAC: Prefix6): %w", p, api.ErrNotSupported)
	case p.Masked() != p:
		return fmt.Errorf("subnet %s has host bits set (did you mean %s?): %w", p, p.Masked(), api.ErrInvalid)
	case p.Bits() > 30:
		return fmt.Errorf("subnet %s is too small for a server and a guest: %w", p, api.ErrInvalid)
	}
	if err := hostAddr(p, s.ServerIP, "server address"); err != nil {
		return err
	}
	if s.Router.IsValid() {
		if err := hostAddr(p, s.Router, "router"); err != nil {
			return err
		}
		if s.Router == s.ServerIP {
			return fmt.Errorf("router %s is the DHCP server's address, which takes no traffic but DHCP: %w", s.Router, api.ErrInvalid)
		}
	}
	return nil
}

// validatePrefix6 says why p cannot be advertised for SLAAC: it must be
// a global unicast /64.
func validatePrefix6(p netip.Prefix) error {
	a := p.Addr()
	switch {
	case !a.Is6() || a.Is4In6():
		return fmt.Errorf("IPv6 prefix %s is not IPv6: %w", p, api.ErrInvalid)
	case p.Bits() != 64:
		return fmt.Errorf("IPv6 prefix %s: SLAAC needs a /64: %w", p, api.ErrInvalid)
	case p.Masked() != p:
		return fmt.Errorf("IPv6 prefix %s has host bits set (did you mean %s?): %w", p, p.Masked(), api.ErrInvalid)
	case !a.IsGlobalUnicast() && !a.IsPrivate():
		return fmt.Errorf("IPv6 prefix %s is not a global or unique local unicast prefix: %w", p, api.ErrInvalid)
	}
	return nil
}

func validateBindings(s Service) error {
	macs, ips := map[string]bool{}, map[netip.Addr]string{}
	for _, b := range s.Bindings {
		if len(b.MAC) != 6 || b.MAC[0]&1 != 0 {
			return fmt.Errorf("binding %s: %q is not a unicast Ethernet MAC: %w", b.IP, b.MAC, api.ErrInvalid)
		}
		mac := b.MAC.String()
		if macs[mac] {
			return fmt.Errorf("MAC %s is bound twice: %w", mac, api.ErrInvalid)
		}
		macs[mac] = true
		if err := hostAddr(s.Subnet, b.IP, "address of "+mac); err != nil {
			return err
		}
		if b.IP == s.ServerIP || b.IP == s.Router {
			return fmt.Errorf("address %s of %s is the server's or the router's: %w", b.IP, mac, api.ErrInvalid)
		}
		if other, ok := ips[b.IP]; ok {
			return fmt.Errorf("address %s is bound to both %s and %s: %w", b.IP, other, mac, api.ErrInvalid)
		}
		ips[b.IP] = mac
		if b.Hostname != "" && !validHostname(b.Hostname) {
			return fmt.Errorf("hostname %q of %s is not a valid host name: %w", b.Hostname, mac, api.ErrInvalid)
		}
	}
	return nil
}

// hostAddr says why a is not a host address of p.
func hostAddr(p netip.Prefix, a netip.Addr, what string) error {
	switch {
	case !a.IsValid():
		return fmt.Errorf("no %s: %w", what, api.ErrInvalid)
	case !a.Is4() || !p.Contains(a):
		return fmt.Errorf("%s %s is outside subnet %s: %w", what, a, p, api.ErrInvalid)
	case a == p.Addr():
		return fmt.Errorf("%s %s is the network address of %s: %w", what, a, p, api.ErrInvalid)
	case a == broadcast(p):
		return fmt.Errorf("%s %s is the broadcast address of %s: %w", what, a, p, api.ErrInvalid)
	}
	return nil
}

// broadcast is the last address of an IPv4 prefix.
func broadcast(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	for i := p.Bits(); i < 32; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom4(b)
}

func validHostname(name string) bool {
	if len(name) > 253 {
		return false
	}
	for _, l := range strings.Split(name, ".") {
		if !labelRE.MatchString(l) {
			return false
		}
	}
	return true
}
