package dhcp

import (
	"context"
	"errors"
	"flag"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/api"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func mac(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to make it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs from the golden file:\n--- got\n%s--- want\n%s", name, got, want)
	}
}

// The dnsmasq configuration and bindings of a service, as files.
func TestRenderGolden(t *testing.T) {
	s := Service{
		PortGroup: "0190a1b2-web", Bridge: "vb0123456789", Subnet: netip.MustParsePrefix("192.0.2.0/24"),
		ServerIP: netip.MustParseAddr("192.0.2.254"), Router: netip.MustParseAddr("192.0.2.1"),
		Prefix6:      netip.MustParsePrefix("2001:db8:1::/64"),
		DNS:          []netip.Addr{netip.MustParseAddr("198.51.100.53"), netip.MustParseAddr("198.51.100.54"), netip.MustParseAddr("2001:db8::53")},
		MTU:          1450,
		LeaseSeconds: 7200,
		Bindings: []Binding{
			{MAC: mac("52:54:00:00:00:02"), IP: netip.MustParseAddr("192.0.2.20"), Hostname: "db1"},
			{MAC: mac("52:54:00:AA:00:01"), IP: netip.MustParseAddr("192.0.2.3")},
		},
	}
	f := render("/var/lib/vdc/dhcp/0190a1b2-web", s, 42)
	golden(t, "full.conf", f.confText)
	golden(t, "full.hosts", f.hosts)
	if want := "/var/lib/vdc/dhcp/0190a1b2-web/dnsmasq-"; !strings.HasPrefix(f.conf, want) {
		t.Errorf("configuration at %s, want under %s", f.conf, want)
	}

	bare := Service{PortGroup: "pg", Bridge: "br1", Subnet: netip.MustParsePrefix("10.0.0.0/16"), ServerIP: netip.MustParseAddr("10.0.255.254")}
	golden(t, "bare.conf", render("/run/dhcp/pg", bare, 7).confText)

	// A configuration is named after its content: the same service on a
	// remade bridge (another ifindex) is another file, so its dnsmasq is
	// restarted; other bindings are the same file.
	again := render("/var/lib/vdc/dhcp/0190a1b2-web", s, 42)
	s2 := s
	s2.Bindings = s.Bindings[:1]
	if again.conf != f.conf || render("/var/lib/vdc/dhcp/0190a1b2-web", s2, 42).conf != f.conf {
		t.Errorf("the same configuration got another name")
	}
	if render("/var/lib/vdc/dhcp/0190a1b2-web", s, 43).conf == f.conf {
		t.Errorf("a remade bridge did not change the configuration's name")
	}
}

// ServerMAC is a unicast, locally administered address, the same for a
// port group everywhere and different between port groups.
func TestServerMAC(t *testing.T) {
	m := ServerMAC("pg-web")
	if len(m) != 6 || m[0]&1 != 0 || m[0]&2 == 0 {
		t.Errorf("ServerMAC %s is not a locally administered unicast MAC", m)
	}
	if ServerMAC("pg-web").String() != m.String() || ServerMAC("pg-db").String() == m.String() {
		t.Errorf("ServerMAC not stable per port group: %s %s %s", m, ServerMAC("pg-web"), ServerMAC("pg-db"))
	}
}

// Bad input is refused with a clear error and changes nothing: not
// even the run directory is made.
func TestInvalidServicesChangeNothing(t *testing.T) {
	good := func() Service {
		return Service{PortGroup: "pg", Bridge: "br0", Subnet: netip.MustParsePrefix("192.0.2.0/24"),
			ServerIP: netip.MustParseAddr("192.0.2.254"), Router: netip.MustParseAddr("192.0.2.1"),
			Bindings: []Binding{{MAC: mac("52:54:00:00:00:01"), IP: netip.MustParseAddr("192.0.2.10"), Hostname: "vm1"}}}
	}
	addr := netip.MustParseAddr
	for _, c := range []struct {
		name   string
		change func(*Service) []Service
		want   error
		says   string
	}{
		{"port group path", func(s *Service) []Service { s.PortGroup = "../etc"; return nil }, api.ErrInvalid, "port group ID"},
		{"no bridge", func(s *Service) []Service { s.Bridge = ""; return nil }, api.ErrInvalid, "bridge"},
		{"long bridge", func(s *Service) []Service { s.Bridge = "bridge-name-too-long"; return nil }, api.ErrInvalid, "longer than 15"},
		{"IPv6", func(s *Service) []Service {
			s.Subnet, s.ServerIP, s.Router = netip.MustParsePrefix("2001:db8::/64"), addr("2001:db8::1"), netip.Addr{}
			return nil
		}, api.ErrNotSupported, "SLAAC"},
		{"host bits", func(s *Service) []Service { s.Subnet = netip.MustParsePrefix("192.0.2.7/24"); return nil }, api.ErrInvalid, "host bits"},
		{"tiny subnet", func(s *Service) []Service { s.Subnet = netip.MustParsePrefix("192.0.2.254/31"); return nil }, api.ErrInvalid, "too small"},
		{"server outside", func(s *Service) []Service { s.ServerIP = addr("198.51.100.1"); return nil }, api.ErrInvalid, "outside subnet"},
		{"server is broadcast", func(s *Service) []Service { s.ServerIP = addr("192.0.2.255"); return nil }, api.ErrInvalid, "broadcast"},
		{"router is server", func(s *Service) []Service { s.Router = s.ServerIP; return nil }, api.ErrInvalid, "router"},
		{"DNS IPv6", func(s *Service) []Service { s.DNS = []netip.Addr{addr("2001:db8::53")}; return nil }, api.ErrInvalid, "no IPv6 prefix"},
		{"nothing to serve", func(s *Service) []Service { s.Subnet = netip.Prefix{}; return nil }, api.ErrInvalid, "neither"},
		{"bindings without subnet", func(s *Service) []Service {
			s.Subnet, s.Prefix6 = netip.Prefix{}, netip.MustParsePrefix("2001:db8::/64")
			return nil
		}, api.ErrInvalid, "no IPv4 subnet"},
		{"prefix not /64", func(s *Service) []Service { s.Prefix6 = netip.MustParsePrefix("2001:db8::/56"); return nil }, api.ErrInvalid, "/64"},
		{"link-local prefix", func(s *Service) []Service { s.Prefix6 = netip.MustParsePrefix("fe80::/64"); return nil }, api.ErrInvalid, "unicast prefix"},
		{"prefix host bits", func(s *Service) []Service { s.Prefix6 = netip.MustParsePrefix("2001:db8::1/64"); return nil }, api.ErrInvalid, "host bits"},
		{"MTU", func(s *Service) []Service { s.MTU = 20; return nil }, api.ErrInvalid, "MTU"},
		{"lease", func(s *Service) []Service { s.LeaseSeconds = 60; return nil }, api.ErrInvalid, "lease time"},
		{"binding outside", func(s *Service) []Service { s.Bindings[0].IP = addr("10.0.0.1"); return nil }, api.ErrInvalid, "outside subnet"},
		{"binding network address", func(s *Service) []Service { s.Bindings[0].IP = addr("192.0.2.0"); return nil }, api.ErrInvalid, "network address"},
		{"binding is server", func(s *Service) []Service { s.Bindings[0].IP = s.ServerIP; return nil }, api.ErrInvalid, "server's"},
		{"group MAC", func(s *Service) []Service { s.Bindings[0].MAC = mac("01:00:5e:00:00:01"); return nil }, api.ErrInvalid, "unicast"},
		{"short MAC", func(s *Service) []Service { s.Bindings[0].MAC = s.Bindings[0].MAC[:4]; return nil }, api.ErrInvalid, "unicast"},
		{"hostname", func(s *Service) []Service { s.Bindings[0].Hostname = "vm_1,evil"; return nil }, api.ErrInvalid, "hostname"},
		{"MAC twice", func(s *Service) []Service {
			s.Bindings = append(s.Bindings, Binding{MAC: s.Bindings[0].MAC, IP: addr("192.0.2.11")})
			return nil
		}, api.ErrInvalid, "bound twice"},
		{"address twice", func(s *Service) []Service {
			s.Bindings = append(s.Bindings, Binding{MAC: mac("52:54:00:00:00:02"), IP: s.Bindings[0].IP})
			return nil
		}, api.ErrInvalid, "bound to both"},
		{"port group twice", func(s *Service) []Service {
			o := good()
			o.Bridge = "br1"
			return []Service{o}
		}, api.ErrInvalid, "listed twice"},
		{"bridge twice", func(s *Service) []Service {
			o := good()
			o.PortGroup = "pg2"
			return []Service{o}
		}, api.ErrInvalid, "both on bridge"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := good()
			want := append([]Service{s}, c.change(&s)...)
			want[0] = s
			runDir := filepath.Join(t.TempDir(), "dhcp")
			err := Converge(context.Background(), 0, runDir, want)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says) {
				t.Errorf("error %v, want %v saying %q", err, c.want, c.says)
			}
			if _, serr := os.Stat(runDir); !os.IsNotExist(serr) {
				t.Errorf("invalid input made the run directory (%v)", serr)
			}
		})
	}
	if err := Converge(context.Background(), 0, "", nil); !errors.Is(err, api.ErrInvalid) {
		t.Errorf("no run directory: %v, want ErrInvalid", err)
	}
}
