package dhcp

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"

	"github.com/vishvananda/netns"
)

// Service is the DHCP service of one port group as one host runs it.
type Service struct {
	// PortGroup is the port group's ID: it names the service's directory
	// under runDir and derives ServerMAC, so it must be the same on
	// every host.
	PortGroup string
	// Bridge is the host-local Linux bridge the port group's VMs are on.
	Bridge string
	// Subnet is the port group's IPv4 subnet; unset (with Prefix6 set),
	// no DHCPv4 is served.
	Subnet netip.Prefix
	// Prefix6 is an IPv6 /64 every host advertises to its VMs on the
	// port group (router advertisements: SLAAC, no DHCPv6), as a router
	// of the port group would. The advertisements say the host is not a
	// router (router lifetime 0): guests take addresses and an on-link
	// route, and a default route only from a real router on the port
	// group. Unset, none are sent.
	Prefix6 netip.Prefix
	// ServerIP is the address the server answers from: the same on
	// every host (for example the subnet's last usable address), so a
	// VM's renewals reach whichever host runs it.
	ServerIP netip.Addr
	// Router is the default gateway handed out (option 3); unset, none
	// is (the host is not a router).
	Router netip.Addr
	// DNS are the name servers handed out: IPv4 ones by DHCP (option 6),
	// IPv6 ones in the router advertisements (RDNSS); none, none are.
	DNS []netip.Addr
	// MTU is handed out as option 26 when set.
	MTU int
	// LeaseSeconds is the lease time; 0 means DefaultLeaseSeconds.
	LeaseSeconds int
	// Bindings are the NICs of the VMs this host runs on the port group:
	// the server answers these MACs only, each with its own address.
	Bindings []Binding
}

// Binding is one NIC's fixed address: allocated by the server once per
// NIC, so it does not change when the VM moves to another host.
type Binding struct {
	MAC      net.HardwareAddr
	IP       netip.Addr
	Hostname string // optional, option 12
}

// DefaultLeaseSeconds is the lease time when Service.LeaseSeconds is 0.
const DefaultLeaseSeconds = 3600

// MinLeaseSeconds is the shortest lease dnsmasq grants.
const MinLeaseSeconds = 120

// TableName is the nftables table (family bridge) this package owns.
const TableName = "vdc-dhcp"

// ServerMAC is the MAC address the DHCP server of a port group answers
// from on every host: a locally administered address derived from the
// port group's ID. Converge gives it to the port group's bridge, so a
// guest that moved to another host still finds its server at the MAC
// it has in its ARP cache and its unicast renewals reach the new host.
func ServerMAC(portGroup string) net.HardwareAddr {
	sum := sha256.Sum256([]byte("vdc-dhcp-server\x00" + portGroup))
	mac := net.HardwareAddr(sum[:6])
	mac[0] = mac[0]&^1 | 2
	return mac
}

// ServerIP6 is the server's IPv6 address in prefix p (a /64: the
// link-local prefix fe80::/64 gives the address the advertisements are
// sent from): its interface identifier is ServerMAC's modified EUI-64,
// so it is the same on every host and no guest's SLAAC address, made
// from the guest's own MAC, is it.
func ServerIP6(portGroup string, p netip.Prefix) netip.Addr { return SLAAC(p, ServerMAC(portGroup)) }

// SLAAC is the address an interface with mac makes in the /64 p
// (modified EUI-64, RFC 4291), as a guest does from a router
// advertisement.
func SLAAC(p netip.Prefix, mac net.HardwareAddr) netip.Addr {
	a := p.Masked().Addr().As16()
	copy(a[8:], []byte{mac[0] ^ 2, mac[1], mac[2], 0xff, 0xfe, mac[3], mac[4], mac[5]})
	return netip.AddrFrom16(a)
}

// linkLocal is fe80::/64.
var linkLocal = netip.MustParsePrefix("fe80::/64")

// ServiceError is why one port group's DHCP service is not (fully)
// running. Converge returns them joined (errors.Join), so a caller can
// report per port group with errors.As over the joined error's
// Unwrap() []error.
type ServiceError struct {
	PortGroup string
	Err       error
}

func (e *ServiceError) Error() string {
	return fmt.Sprintf("DHCP service of port group %s: %v", e.PortGroup, e.Err)
}
func (e *ServiceError) Unwrap() error { return e.Err }

type options struct{ log *slog.Logger }

// Option changes how Converge works.
type Option func(*options)

// WithLogger logs what Converge changes (at Info) and what it leaves as
// is (at Debug).
func WithLogger(log *slog.Logger) Option { return func(o *options) { o.log = log } }

// mu serialises Converge: two at once would both start a dnsmasq for a
// service that has none.
var mu sync.Mutex

// Converge makes the network namespace ns (0: the caller's) run exactly
// the DHCP services in want, keeping their files under runDir (one
// directory per port group). Services are validated first; an invalid
// one changes nothing and is an error wrapping api.ErrInvalid. Then
// services no longer wanted are stopped and their files removed, the
// nftables table is replaced, and each wanted service is brought up to
// date: its bridge address and MAC, its configuration and bindings, its
// dnsmasq (started, adopted, sent SIGHUP or restarted as needed). A
// service that cannot be brought up is a *ServiceError; the others
// still converge. Errors are joined.
func Converge(ctx context.Context, ns netns.NsHandle, runDir string, want []Service, opts ...Option) error {
	o := options{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, opt := range opts {
		opt(&o)
	}
	if ns < 0 {
		ns = 0
	}
	if err := validateAll(runDir, want); err != nil {
		return fmt.Errorf("converge DHCP services: %w", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("converge DHCP services: %w", err)
	}
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		return fmt.Errorf("converge DHCP services: make run directory: %w", err)
	}
	h, err := openHost(ns, o.log)
	if err != nil {
		return fmt.Errorf("converge DHCP services: %w", err)
	}
	defer h.close()

	var errs []error
	errs = append(errs, removeStale(ctx, h, runDir, want)...)
	// The rules go in before any server starts, so a new server never
	// hears, even briefly, what other hosts' VMs send.
	guards := make([]guarded, len(want))
	for i, s := range want {
		guards[i] = guarded{s: s, offHost: h.offHostPorts(s)}
	}
	if err := applyRules(ns, guards); err != nil {
		errs = append(errs, fmt.Errorf("converge DHCP services: %w", err))
	}
	for _, s := range want {
		if err := ctx.Err(); err != nil {
			errs = append(errs, fmt.Errorf("converge DHCP services: %w", err))
			break
		}
		if err := ensureService(ctx, h, filepath.Join(runDir, s.PortGroup), s); err != nil {
			errs = append(errs, &ServiceError{PortGroup: s.PortGroup, Err: err})
		}
	}
	return errors.Join(errs...)
}

// removeStale stops the services whose directories are in runDir but
// which are not wanted any more, and removes their traces.
func removeStale(ctx context.Context, h *host, runDir string, want []Service) []error {
	wanted := map[string]bool{}
	for _, s := range want {
		wanted[s.PortGroup] = true
	}
	entries, err := os.ReadDir(runDir)
	if err != nil {
		return []error{fmt.Errorf("list DHCP services in %s: %w", runDir, err)}
	}
	var errs []error
	for _, e := range entries {
		if !e.IsDir() || wanted[e.Name()] {
			continue
		}
		dir := filepath.Join(runDir, e.Name())
		if !isServiceDir(dir) {
			continue // not ours: leave it alone
		}
		if err := removeService(ctx, h, dir); err != nil {
			errs = append(errs, &ServiceError{PortGroup: e.Name(), Err: err})
		}
	}
	return errs
}

// removeService stops a service's dnsmasq, takes its address (and MAC)
// off its bridge and removes its directory.
func removeService(ctx context.Context, h *host, dir string) error {
	log := h.log.With("portgroup", filepath.Base(dir))
	if err := stopServer(ctx, dir, log); err != nil {
		return err
	}
	st, err := readState(dir)
	if err != nil {
		return err
	}
	if st != nil {
		if err := h.release(st, filepath.Base(dir)); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	log.Info("DHCP service removed", "dir", dir)
	return nil
}

// ensureService brings one wanted service up to date.
func ensureService(ctx context.Context, h *host, dir string, s Service) error {
	log := h.log.With("portgroup", s.PortGroup, "bridge", s.Bridge)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("make directory: %w", err)
	}
	ifindex, err := h.claim(dir, s)
	if err != nil {
		return err
	}
	files := render(dir, s, ifindex)
	return ensureServer(ctx, h.ns, dir, files, log)
}
