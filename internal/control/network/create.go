package network

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/state"
)

// NewSwitch checks a switch create request and makes the switch (not
// stored yet). The caller holds Lock until it is committed.
func (s *Service) NewSwitch(req api.SwitchCreateRequest) (*api.Switch, error) {
	if err := inventory.ValidateCommon("switch", req.Name, req.Labels, req.Description); err != nil {
		return nil, err
	}
	cl, err := s.d.Inv.PickCluster(req.Cluster)
	if err != nil {
		return nil, err
	}
	sw := &api.Switch{
		Metadata: api.ObjectMeta{Name: req.Name, Labels: req.Labels},
		Spec: api.SwitchSpec{Datacenter: cl.Spec.Datacenter, Cluster: api.Ref{ID: cl.Metadata.ID},
			Backend: req.Backend, MTU: req.MTU, Uplinks: req.Uplinks, Description: req.Description},
	}
	if sw.Spec.Backend == "" {
		sw.Spec.Backend = api.BackendBridge
	}
	if sw.Spec.MTU == 0 {
		sw.Spec.MTU = 1500
	}
	if sw.Spec.Backend != api.BackendBridge && sw.Spec.Backend != api.BackendOVS {
		return nil, api.Errorf(api.ErrInvalid, "switch backend must be %s or %s, got %q", api.BackendBridge, api.BackendOVS, sw.Spec.Backend)
	}
	if err := inventory.FirstErr(validateMTU(sw.Spec.MTU), validateUplinks(sw.Spec.Uplinks)); err != nil {
		return nil, err
	}
	return sw, nil
}

// UpdateSwitch applies an update request to sw (a copy to be stored).
func (s *Service) UpdateSwitch(sw *api.Switch, req api.SwitchUpdateRequest) error {
	err := inventory.FirstErr(inventory.Rename("switch", &sw.Metadata, req.Name), inventory.Relabel(&sw.Metadata, req.Labels),
		inventory.Redescribe(&sw.Spec.Description, req.Description))
	if err == nil && req.MTU != nil {
		err = validateMTU(*req.MTU)
		sw.Spec.MTU = *req.MTU
	}
	if err == nil && req.Uplinks != nil {
		err = validateUplinks(*req.Uplinks)
		sw.Spec.Uplinks = *req.Uplinks
	}
	return err
}

func validateMTU(mtu int) error {
	if mtu < api.MinMTU || mtu > api.MaxMTU {
		return api.Errorf(api.ErrInvalid, "MTU must be between %d (the least IPv6 allows) and %d, got %d", api.MinMTU, api.MaxMTU, mtu)
	}
	return nil
}

// ifName is what Linux accepts as an interface name.
var ifName = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,15}$`)

func validateUplinks(ups []string) error {
	for i, u := range ups {
		if !ifName.MatchString(u) {
			return api.Errorf(api.ErrInvalid, "uplink %q is not an interface name (1-15 letters, digits, '.', '-', '_' or ':')", u)
		}
		if slices.Contains(ups[:i], u) {
			return api.Errorf(api.ErrInvalid, "uplink %q is named twice", u)
		}
	}
	return nil
}

// NewPortGroup checks a port group create request and makes the port
// group (not stored yet). The caller holds Lock until it is committed.
func (s *Service) NewPortGroup(req api.PortGroupCreateRequest) (*api.PortGroup, error) {
	if err := inventory.ValidateCommon("port group", req.Name, req.Labels, req.Description); err != nil {
		return nil, err
	}
	pg := &api.PortGroup{
		Metadata: api.ObjectMeta{Name: req.Name, Labels: req.Labels},
		Spec:     api.PortGroupSpec{VNI: req.VNI, VLAN: req.VLAN, Isolated: req.Isolated, Description: req.Description},
	}
	if req.Security != nil {
		pg.Spec.Security = *req.Security
	}
	if req.Shaping != nil {
		pg.Spec.Shaping = *req.Shaping
	}
	if req.Switch == "" {
		if req.VNI != 0 || req.VLAN != 0 || req.Isolated || req.Security != nil || req.Shaping != nil || req.DHCP != nil {
			return nil, api.Errorf(api.ErrInvalid, "port group %s: --vxlan, --vlan, --isolated, security, shaping and DHCP need a switch (--switch); a port group without one is a NAT network", req.Name)
		}
		dc, err := s.d.Inv.PickDatacenter(req.Datacenter)
		if err != nil {
			return nil, err
		}
		pg.Spec.Datacenter = api.Ref{ID: dc.Metadata.ID}
		return pg, nil
	}
	sw, err := state.Find[*api.Switch](s.d.State, req.Switch)
	if err != nil {
		return nil, err
	}
	pg.Spec.Switch, pg.Spec.Datacenter = api.Ref{ID: sw.Metadata.ID}, sw.Spec.Datacenter
	kinds := 0
	for _, set := range []bool{req.VNI != 0, req.VLAN != 0, req.Isolated} {
		if set {
			kinds++
		}
	}
	if kinds != 1 {
		return nil, api.Errorf(api.ErrInvalid, "port group %s on switch %s: give exactly one of --vxlan VNI, --vlan ID or --isolated", req.Name, sw.Metadata.Name)
	}
	if err := s.checkPortGroup(pg, sw); err != nil {
		return nil, err
	}
	if req.DHCP != nil {
		d, err := checkDHCP(*req.DHCP)
		if err != nil {
			return nil, fmt.Errorf("port group %s: %w", req.Name, err)
		}
		pg.Spec.DHCP = &d
	}
	return pg, nil
}

// checkDHCP checks a port group's address service and fills in the
// server address: an IPv4 subnet of /8 to /29 with the router and the
// server in it, an IPv6 /64 to advertise, or both.
func checkDHCP(d api.PortGroupDHCP) (api.PortGroupDHCP, error) {
	if d.Subnet == "" && d.IPv6Prefix == "" {
		return d, api.Errorf(api.ErrInvalid, "DHCP: give an IPv4 subnet (192.0.2.0/24), an IPv6 prefix to advertise (2001:db8:1::/64), or both")
	}
	if d.IPv6Prefix != "" {
		p, err := netip.ParsePrefix(d.IPv6Prefix)
		if err != nil || !p.Addr().Is6() || p.Addr().Is4In6() || p.Bits() != 64 || !p.Addr().IsGlobalUnicast() {
			return d, api.Errorf(api.ErrInvalid, "IPv6 prefix %q: give a global or unique local /64 (2001:db8:1::/64): SLAAC needs 64 bits of interface ID", d.IPv6Prefix)
		}
		d.IPv6Prefix = p.Masked().String()
	}
	for _, a := range d.DNS {
		ip, err := netip.ParseAddr(a)
		switch {
		case err != nil:
			return d, api.Errorf(api.ErrInvalid, "DHCP DNS server %q is not an IP address", a)
		case ip.Is4() && d.Subnet == "":
			return d, api.Errorf(api.ErrInvalid, "DNS server %s is IPv4, but the port group gets no IPv4 subnet (--dhcp)", a)
		case ip.Is6() && d.IPv6Prefix == "":
			return d, api.Errorf(api.ErrInvalid, "DNS server %s is IPv6, but the port group gets no IPv6 prefix (--ipv6-prefix)", a)
		}
	}
	if d.Subnet == "" {
		if d.Router != "" || d.ServerIP != "" {
			return d, api.Errorf(api.ErrInvalid, "DHCP router and server addresses need an IPv4 subnet")
		}
		return d, nil
	}
	p, err := netip.ParsePrefix(d.Subnet)
	if err != nil || !p.Addr().Is4() || p.Bits() < 8 || p.Bits() > 29 {
		return d, api.Errorf(api.ErrInvalid, "DHCP subnet %q: give an IPv4 network of /8 to /29 (192.0.2.0/24)", d.Subnet)
	}
	p = p.Masked()
	d.Subnet = p.String()
	inSubnet := func(what, a string) error {
		ip, err := netip.ParseAddr(a)
		if err != nil || !p.Contains(ip) || ip == p.Addr() || ip.Compare(inventory.LastUsable(p)) > 0 {
			return api.Errorf(api.ErrInvalid, "DHCP %s %q is not a host address of subnet %s", what, a, d.Subnet)
		}
		return nil
	}
	if d.ServerIP == "" {
		d.ServerIP = inventory.LastUsable(p).String()
	}
	if err := inSubnet("server address", d.ServerIP); err != nil {
		return d, err
	}
	if d.Router != "" {
		if err := inSubnet("router", d.Router); err != nil {
			return d, err
		}
		if d.Router == d.ServerIP {
			return d, api.Errorf(api.ErrInvalid, "the DHCP server address %s is the router's: give the server another (--dhcp-server)", d.ServerIP)
		}
	}
	return d, nil
}

// UpdatePortGroup applies an update request to pg (a copy to be stored).
func (s *Service) UpdatePortGroup(pg *api.PortGroup, req api.PortGroupUpdateRequest) error {
	if err := inventory.FirstErr(inventory.Rename("port group", &pg.Metadata, req.Name), inventory.Relabel(&pg.Metadata, req.Labels),
		inventory.Redescribe(&pg.Spec.Description, req.Description)); err != nil {
		return err
	}
	if pg.Spec.Switch.IsZero() {
		if req.VNI != nil || req.VLAN != nil || req.Security != (api.SecurityUpdate{}) || req.Shaping != (api.ShapingUpdate{}) {
			return api.Errorf(api.ErrInvalid, "port group %s is a NAT network (no switch): it has no VNI, VLAN, security or shaping", pg.Metadata.Name)
		}
		return nil
	}
	kind := pg.Type()
	if req.VNI != nil {
		if kind != api.PortGroupVXLAN {
			return api.Errorf(api.ErrInvalid, "port group %s is a %s port group: it has no VNI", pg.Metadata.Name, kind)
		}
		pg.Spec.VNI = *req.VNI
	}
	if req.VLAN != nil {
		if kind != api.PortGroupVLAN {
			return api.Errorf(api.ErrInvalid, "port group %s is a %s port group: it has no VLAN", pg.Metadata.Name, kind)
		}
		pg.Spec.VLAN = *req.VLAN
	}
	setBool(&pg.Spec.Security.AllowMACChanges, req.Security.AllowMACChanges)
	setBool(&pg.Spec.Security.AllowForgedTransmits, req.Security.AllowForgedTransmits)
	setBool(&pg.Spec.Security.AllowPromiscuous, req.Security.AllowPromiscuous)
	sh := &pg.Spec.Shaping
	switch {
	case req.Shaping.NoIn && req.Shaping.In != nil, req.Shaping.NoOut && req.Shaping.Out != nil:
		return api.Errorf(api.ErrInvalid, "port group %s: a direction's shaping is both set and removed", pg.Metadata.Name)
	case req.Shaping.NoIn:
		sh.In = nil
	case req.Shaping.In != nil:
		sh.In = req.Shaping.In
	}
	switch {
	case req.Shaping.NoOut:
		sh.Out = nil
	case req.Shaping.Out != nil:
		sh.Out = req.Shaping.Out
	}
	sw, err := state.Find[*api.Switch](s.d.State, pg.Spec.Switch.ID)
	if err != nil {
		return err
	}
	return s.checkPortGroup(pg, sw)
}

// checkPortGroup checks a port group of switch sw: its VNI or VLAN in
// range and unused on the switch, its shaping possible.
func (s *Service) checkPortGroup(pg *api.PortGroup, sw *api.Switch) error {
	switch {
	case pg.Spec.VNI < 0 || pg.Spec.VNI > api.MaxVNI:
		return api.Errorf(api.ErrInvalid, "VXLAN VNI must be between 1 and %d, got %d", api.MaxVNI, pg.Spec.VNI)
	case pg.Spec.VLAN < 0 || pg.Spec.VLAN > api.MaxVLAN:
		return api.Errorf(api.ErrInvalid, "VLAN ID must be between 1 and %d, got %d", api.MaxVLAN, pg.Spec.VLAN)
	}
	for dir, sh := range map[string]*api.TrafficShape{"in": pg.Spec.Shaping.In, "out": pg.Spec.Shaping.Out} {
		if err := validateShape(dir, sh); err != nil {
			return fmt.Errorf("port group %s: %w", pg.Metadata.Name, err)
		}
	}
	var clash error
	state.Each(s.d.State, func(o *api.PortGroup) {
		if clash != nil || o.Metadata.ID == pg.Metadata.ID || o.Spec.Switch.ID != sw.Metadata.ID {
			return
		}
		switch {
		case pg.Spec.VNI != 0 && o.Spec.VNI == pg.Spec.VNI:
			clash = api.Errorf(api.ErrConflict, "VNI %d is already port group %s's on switch %s", pg.Spec.VNI, o.Metadata.Name, sw.Metadata.Name)
		case pg.Spec.VLAN != 0 && o.Spec.VLAN == pg.Spec.VLAN:
			clash = api.Errorf(api.ErrConflict, "VLAN %d is already port group %s's on switch %s", pg.Spec.VLAN, o.Metadata.Name, sw.Metadata.Name)
		}
	})
	return clash
}

func validateShape(dir string, sh *api.TrafficShape) error {
	if sh == nil {
		return nil
	}
	switch {
	case sh.AverageBitsPerSec == 0:
		return api.Errorf(api.ErrInvalid, "%s shaping: the average rate must be above 0 (leave shaping out for no limit)", dir)
	case sh.PeakBitsPerSec != 0 && sh.PeakBitsPerSec < sh.AverageBitsPerSec:
		return api.Errorf(api.ErrInvalid, "%s shaping: the peak rate (%d bit/s) is below the average (%d bit/s)", dir, sh.PeakBitsPerSec, sh.AverageBitsPerSec)
	case sh.BurstBytes < 0:
		return api.Errorf(api.ErrInvalid, "%s shaping: the burst must not be negative", dir)
	}
	return nil
}

func setBool(dst *bool, v *bool) {
	if v != nil {
		*dst = *v
	}
}
