package network

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"path/filepath"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/netconf"
	"github.com/vdc-project/vdc/internal/netconf/dhcp"
)

// EnableDHCP has the manager run the DHCP services of the host's port
// groups (internal/netconf/dhcp), their files under the data directory.
func (m *Manager) EnableDHCP() { m.dhcpDir = filepath.Join(m.dir, "dhcp") }

// convergeDHCP runs a DHCP service for each port group with DHCP that
// the bridge backend realized here, answering the NICs of this host's
// VMs, and stops the others; what fails goes in the port group's report.
func (m *Manager) convergeDHCP(ctx context.Context, want *api.HostNetwork, pgBackend map[string]string, reports []api.SwitchReport, vms []hypervisor.VMConfig) {
	if m.dhcpDir == "" {
		return
	}
	failed := map[string]bool{}
	for _, r := range reports {
		if r.Error != "" {
			failed[r.Switch] = true
		}
		for pg := range r.PortGroups {
			failed[pg] = true
		}
	}
	var services []dhcp.Service
	for _, sw := range want.Switches {
		for _, pg := range sw.PortGroups {
			if pg.DHCP == nil || pgBackend[pg.ID] != api.BackendBridge || failed[sw.ID] || failed[pg.ID] {
				continue
			}
			if s, ok := service(sw, pg, vms); ok {
				services = append(services, s)
			}
		}
	}
	err := dhcp.Converge(ctx, 0, m.dhcpDir, services, dhcp.WithLogger(m.log))
	if err == nil {
		return
	}
	m.log.Warn("network: DHCP", "err", err)
	for _, e := range flatten(err) {
		var se *dhcp.ServiceError
		if !errors.As(e, &se) {
			continue
		}
		for i := range reports {
			for _, pg := range switchOf(want, reports[i].Switch).PortGroups {
				if pg.ID == se.PortGroup {
					if reports[i].PortGroups == nil {
						reports[i].PortGroups = map[string]string{}
					}
					reports[i].PortGroups[pg.ID] = se.Error()
				}
			}
		}
	}
}

// service is port group pg's DHCP service on this host.
func service(sw api.HostSwitch, pg api.HostPortGroup, vms []hypervisor.VMConfig) (dhcp.Service, bool) {
	s := dhcp.Service{PortGroup: pg.ID, Bridge: netconf.BridgeName(pg.ID), MTU: sw.MTU}
	s.Subnet, _ = netip.ParsePrefix(pg.DHCP.Subnet)
	s.Prefix6, _ = netip.ParsePrefix(pg.DHCP.IPv6Prefix)
	if !s.Subnet.IsValid() && !s.Prefix6.IsValid() {
		return dhcp.Service{}, false
	}
	s.ServerIP, _ = netip.ParseAddr(pg.DHCP.ServerIP)
	s.Router, _ = netip.ParseAddr(pg.DHCP.Router)
	for _, d := range pg.DHCP.DNS {
		if a, err := netip.ParseAddr(d); err == nil {
			s.DNS = append(s.DNS, a)
		}
	}
	for _, vm := range vms {
		for _, n := range vm.NICs {
			if !s.Subnet.IsValid() {
				break
			}
			ip, err := netip.ParseAddr(n.IPv4)
			mac, merr := net.ParseMAC(n.MAC)
			if n.PortGroup != pg.ID || n.Tap == "" || err != nil || merr != nil {
				continue
			}
			s.Bindings = append(s.Bindings, dhcp.Binding{MAC: mac, IP: ip, Hostname: hostname(vm.Name)})
		}
	}
	return s, true
}

// hostname is a VM's name as a DHCP host name, or "" when it is not one.
func hostname(name string) string {
	if len(name) > 63 {
		return ""
	}
	for i, c := range name {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' && i > 0
		if !ok {
			return ""
		}
	}
	return name
}

func switchOf(want *api.HostNetwork, id string) api.HostSwitch {
	for _, sw := range want.Switches {
		if sw.ID == id {
			return sw
		}
	}
	return api.HostSwitch{}
}

// flatten lists the errors joined into err.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}
