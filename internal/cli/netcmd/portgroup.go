package netcmd

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/cli/cmdutil"
)

func NewPortGroupCmd(g *cmdutil.Globals) *cobra.Command {
	d := &cmdutil.Noun[*api.PortGroup]{
		Kind: api.KindPortGroup, Singular: "port group", Plural: "port groups",
		Use: "portgroup", Aliases: []string{"pg"},
		Short: "Manage port groups, the networks VM NICs attach to",
		Columns: func(now time.Time) []cmdutil.Column[*api.PortGroup] {
			return []cmdutil.Column[*api.PortGroup]{
				{Header: "name", Value: func(o *api.PortGroup) string { return o.Metadata.Name }},
				{Header: "switch", Value: func(o *api.PortGroup) string { return o.Spec.Switch.String() }},
				{Header: "type", Value: func(o *api.PortGroup) string { return o.Status.Type }},
				{Header: "id", Value: networkID},
				{Header: "ports", Value: func(o *api.PortGroup) string { return strconv.Itoa(o.Status.Ports) }},
				{Header: "age", Value: func(o *api.PortGroup) string { return cmdutil.Age(now, o.Metadata.Created) }},
			}
		},
		Info: portGroupInfo,
		Create: func(cmd *cobra.Command) func(string) (any, error) {
			m := cmdutil.AddMetaFlags(cmd, false, true)
			fl := cmd.Flags()
			dc := fl.String("datacenter", "", "datacenter of a NAT port group (default: the only one)")
			sw := fl.String("switch", "", "the distributed switch (none: a NAT network, outbound only)")
			vni := fl.Int("vxlan", 0, "a VXLAN overlay across the switch's hosts, with this VNI (1-16777215)")
			vlan := fl.Int("vlan", 0, "an 802.1Q VLAN of the uplinks, with this ID (1-4094)")
			iso := fl.Bool("isolated", false, "the VMs of one host only")
			dhcp := fl.String("dhcp", "", "give each NIC a fixed address of this IPv4 subnet by DHCP, served by the host the VM runs on: SUBNET[,router=IP][,dns=IP][,server=IP]")
			prefix6 := fl.String("ipv6-prefix", "", "advertise this IPv6 /64 to the guests (router advertisements from the host the VM runs on: SLAAC, no default route): PREFIX[,dns=IP]")
			pol := addPolicyFlags(cmd, false)
			return func(name string) (any, error) {
				labels, err := m.LabelMap()
				if err != nil {
					return nil, err
				}
				req := api.PortGroupCreateRequest{Name: name, Datacenter: *dc, Switch: *sw, VNI: *vni, VLAN: *vlan, Isolated: *iso,
					Description: m.Description, Labels: labels}
				if sec := pol.security(); sec != (api.SecurityUpdate{}) {
					req.Security = &api.PortSecurity{AllowMACChanges: deref(sec.AllowMACChanges),
						AllowForgedTransmits: deref(sec.AllowForgedTransmits), AllowPromiscuous: deref(sec.AllowPromiscuous)}
				}
				sh, err := pol.shaping()
				if sh.In != nil || sh.Out != nil {
					req.Shaping = &api.Shaping{In: sh.In, Out: sh.Out}
				}
				if err == nil && *dhcp != "" {
					req.DHCP, err = parseDHCP(*dhcp)
				}
				if err == nil && *prefix6 != "" {
					req.DHCP, err = parseIPv6Prefix(req.DHCP, *prefix6)
				}
				return req, err
			}
		},
		CreateExample: `  vdc pg create web --switch dvs1 --vxlan 5001
  vdc pg create dmz --switch dvs1 --vlan 20 --shape-in 100Mbit --shape-out 50Mbit,peak=80Mbit,burst=1MiB
  vdc pg create lab --switch dvs1 --isolated --allow-promiscuous
  vdc pg create app --switch dvs1 --vxlan 5002 --dhcp 192.168.50.0/24,router=192.168.50.1
  vdc pg create v6 --switch dvs1 --vxlan 5003 --ipv6-prefix 2001:db8:5003::/64
  vdc pg create outbound              # NAT: no switch`,
		Update: func(cmd *cobra.Command) func() (any, error) {
			m := cmdutil.AddMetaFlags(cmd, true, true)
			vni := cmd.Flags().Int("vxlan", 0, "the VNI of a VXLAN port group")
			vlan := cmd.Flags().Int("vlan", 0, "the VLAN ID of a VLAN port group")
			pol := addPolicyFlags(cmd, true)
			return func() (any, error) {
				mc, err := m.Change("port group")
				if err != nil {
					return nil, err
				}
				sh, err := pol.shaping()
				return api.PortGroupUpdateRequest{Name: mc.Name, Description: mc.Description, Labels: mc.Labels,
					VNI: cmdutil.Changed(cmd, "vxlan", *vni), VLAN: cmdutil.Changed(cmd, "vlan", *vlan),
					Security: pol.security(), Shaping: sh}, err
			}
		},
		UpdateExample: "  vdc pg update dmz --vlan 30\n  vdc pg update web --allow-forged-transmits=true --shape-in off",
		ListFlags: func(cmd *cobra.Command) func() (url.Values, error) {
			dc := cmd.Flags().String("datacenter", "", "only those of this datacenter")
			return func() (url.Values, error) {
				if *dc == "" {
					return nil, nil
				}
				return url.Values{"datacenter": {*dc}}, nil
			}
		},
	}
	return d.Command(g)
}

// networkID is what identifies a port group's network on the wire.
func networkID(o *api.PortGroup) string {
	switch {
	case o.Spec.VNI != 0:
		return "vni " + strconv.Itoa(o.Spec.VNI)
	case o.Spec.VLAN != 0:
		return "vlan " + strconv.Itoa(o.Spec.VLAN)
	}
	return ""
}

func portGroupInfo(v *cmdutil.InfoView, o *api.PortGroup, now time.Time) {
	cmdutil.MetaInfo(v, &o.Metadata, now)
	v.Add("Datacenter", o.Spec.Datacenter.String())
	v.Add("Switch", o.Spec.Switch.String())
	v.Add("Type", o.Status.Type)
	v.Add("Network", networkID(o))
	v.Add("Ports", strconv.Itoa(o.Status.Ports))
	v.Add("Description", o.Spec.Description)
	if o.Spec.Switch.IsZero() {
		return
	}
	sec := o.Spec.Security
	v.Add("MAC changes", allowed(sec.AllowMACChanges))
	v.Add("Forged transmits", allowed(sec.AllowForgedTransmits))
	v.Add("Promiscuous", allowed(sec.AllowPromiscuous))
	v.Add("Shaping in", shapeString(o.Spec.Shaping.In))
	v.Add("Shaping out", shapeString(o.Spec.Shaping.Out))
	if d := o.Spec.DHCP; d != nil {
		if d.Subnet != "" {
			v.Add("DHCP", fmt.Sprintf("%s from %s", d.Subnet, d.ServerIP))
			v.Add("Router", d.Router)
		}
		v.Add("IPv6 prefix", d.IPv6Prefix)
		v.Add("DNS", strings.Join(d.DNS, ", "))
	}
}

func allowed(b bool) string {
	if b {
		return "allowed"
	}
	return "refused"
}

func shapeString(s *api.TrafficShape) string {
	if s == nil {
		return "none"
	}
	out := "average " + rateString(s.AverageBitsPerSec)
	if s.PeakBitsPerSec != 0 {
		out += ", peak " + rateString(s.PeakBitsPerSec)
	}
	if s.BurstBytes != 0 {
		out += ", burst " + s.BurstBytes.String()
	}
	return out
}

// parseDHCP reads SUBNET[,router=IP][,dns=IP][,server=IP].
func parseDHCP(spec string) (*api.PortGroupDHCP, error) {
	subnet, opts, err := cmdutil.SplitSpec("--dhcp", "subnet", spec, "router", "dns", "server")
	if err != nil {
		return nil, err
	}
	d := &api.PortGroupDHCP{Subnet: subnet, Router: opts["router"], ServerIP: opts["server"]}
	if dns := opts["dns"]; dns != "" {
		d.DNS = strings.Split(dns, "+")
	}
	return d, nil
}

// parseIPv6Prefix reads PREFIX[,dns=IP] into d (made when nil).
func parseIPv6Prefix(d *api.PortGroupDHCP, spec string) (*api.PortGroupDHCP, error) {
	prefix, opts, err := cmdutil.SplitSpec("--ipv6-prefix", "prefix", spec, "dns")
	if err != nil {
		return nil, err
	}
	if d == nil {
		d = &api.PortGroupDHCP{}
	}
	d.IPv6Prefix = prefix
	if dns := opts["dns"]; dns != "" {
		d.DNS = append(d.DNS, strings.Split(dns, "+")...)
	}
	return d, nil
}

func deref(b *bool) bool { return b != nil && *b }

// policyFlags are a port group's security and shaping flags.
type policyFlags struct {
	cmd                      *cobra.Command
	macChanges, forged, prom bool
	in, out                  string
	update                   bool
}

func addPolicyFlags(cmd *cobra.Command, update bool) *policyFlags {
	p := &policyFlags{cmd: cmd, update: update}
	fl := cmd.Flags()
	fl.BoolVar(&p.macChanges, "allow-mac-changes", false, "let guests receive frames for a MAC they gave themselves")
	fl.BoolVar(&p.forged, "allow-forged-transmits", false, "let guests send from another MAC than their NIC's")
	fl.BoolVar(&p.prom, "allow-promiscuous", false, "let guests see all the port group's frames")
	off := ""
	if update {
		off = "; off removes it"
	}
	fl.StringVar(&p.in, "shape-in", "", "limit each port's traffic towards its VM: RATE[,peak=RATE][,burst=SIZE] (10Mbit, 1Gbit...)"+off)
	fl.StringVar(&p.out, "shape-out", "", "limit each port's traffic from its VM, as --shape-in"+off)
	return p
}

func (p *policyFlags) security() api.SecurityUpdate {
	return api.SecurityUpdate{AllowMACChanges: cmdutil.Changed(p.cmd, "allow-mac-changes", p.macChanges),
		AllowForgedTransmits: cmdutil.Changed(p.cmd, "allow-forged-transmits", p.forged),
		AllowPromiscuous:     cmdutil.Changed(p.cmd, "allow-promiscuous", p.prom)}
}

func (p *policyFlags) shaping() (api.ShapingUpdate, error) {
	var u api.ShapingUpdate
	var err error
	if p.update && p.in == "off" {
		u.NoIn = true
	} else if p.in != "" {
		u.In, err = parseShape("--shape-in", p.in)
		if err != nil {
			return u, err
		}
	}
	if p.update && p.out == "off" {
		u.NoOut = true
	} else if p.out != "" {
		u.Out, err = parseShape("--shape-out", p.out)
	}
	return u, err
}

// parseShape reads RATE[,peak=RATE][,burst=SIZE].
func parseShape(flag, spec string) (*api.TrafficShape, error) {
	avg, opts, err := cmdutil.SplitSpec(flag, "rate", spec, "peak", "burst")
	if err != nil {
		return nil, err
	}
	var s api.TrafficShape
	if s.AverageBitsPerSec, err = parseRate(flag, avg); err != nil {
		return nil, err
	}
	if v, ok := opts["peak"]; ok {
		if s.PeakBitsPerSec, err = parseRate(flag+" peak", v); err != nil {
			return nil, err
		}
	}
	if v, ok := opts["burst"]; ok {
		if s.BurstBytes, err = cmdutil.ParseSizeFlag(flag+" burst", v, 1, api.MustSize("1GiB")); err != nil {
			return nil, err
		}
	}
	return &s, nil
}

var rateUnits = []struct {
	suffix string
	mult   float64
}{{"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}, {"bit", 1}, {"g", 1e9}, {"m", 1e6}, {"k", 1e3}}

// parseRate reads a rate in bits per second: 100Mbit, 1.5Gbit/s, 64kbit,
// or a plain number of bit/s.
func parseRate(flag, s string) (uint64, error) {
	t := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), "/s")
	mult := 1.0
	for _, u := range rateUnits {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSuffix(t, u.suffix), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f <= 0 || f*mult > 1e12 {
		return 0, fmt.Errorf("%s: %q is not a rate above 0 and at most 1Tbit (say 100Mbit, 1Gbit)", flag, s)
	}
	return uint64(f * mult), nil
}

func rateString(bps uint64) string {
	switch {
	case bps >= 1e9 && bps%1e6 == 0:
		return strconv.FormatFloat(float64(bps)/1e9, 'f', -1, 64) + " Gbit/s"
	case bps >= 1e6 && bps%1e3 == 0:
		return strconv.FormatFloat(float64(bps)/1e6, 'f', -1, 64) + " Mbit/s"
	case bps >= 1e3:
		return strconv.FormatFloat(float64(bps)/1e3, 'f', -1, 64) + " kbit/s"
	}
	return strconv.FormatUint(bps, 10) + " bit/s"
}
