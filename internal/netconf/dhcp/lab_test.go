package dhcp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/vdc-project/vdc/internal/testenv"
)

// The lab: "hosts" are network namespaces, each with a bridge for the
// port group, joined by a veth pair named like VXLAN devices (the
// tunnel between hosts); a "VM" is a namespace of its own whose eth0 is
// a veth pair's far end, with a known MAC, the near end ("vt...") on a
// host's bridge.

const (
	labBridge = "vbdhcptest"
	labPG     = "pg-web"
)

var (
	labSubnet = netip.MustParsePrefix("192.0.2.0/24")
	labServer = netip.MustParseAddr("192.0.2.254")
)

type labHost struct {
	name   string
	ns     netns.NsHandle
	h      *netlink.Handle
	runDir string
}

type labVM struct {
	name   string
	ns     netns.NsHandle // the guest
	nicNS  netns.NsHandle // its NIC, see newVM
	nic    *netlink.Handle
	mac    net.HardwareAddr
	port   string // the NIC's port on the host's bridge
	bridge string // which bridge
	on     *labHost
}

func needLab(t *testing.T) {
	t.Helper()
	testenv.NeedRoot(t, "network namespaces, bridges, nftables and dnsmasq")
	testenv.NeedTools(t, "dnsmasq-base busybox-static", "dnsmasq", "busybox")
}

// newNS makes a network namespace without moving the test into it.
func newNS(t *testing.T) netns.NsHandle {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("get the current network namespace: %v", err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("make a network namespace: %v", err)
	}
	if err := netns.Set(orig); err != nil {
		t.Fatalf("return to the original network namespace: %v", err) // thread stays locked
	}
	runtime.UnlockOSThread()
	t.Cleanup(func() { ns.Close() })
	return ns
}

func newHost(t *testing.T, name string) *labHost {
	t.Helper()
	h := &labHost{name: name, ns: newNS(t), runDir: filepath.Join(t.TempDir(), "dhcp")}
	var err error
	if h.h, err = netlink.NewHandleAt(h.ns); err != nil {
		t.Fatalf("rtnetlink in host %s: %v", name, err)
	}
	t.Cleanup(h.h.Close)
	h.addBridge(t, labBridge)
	// Whatever the test leaves running, its dnsmasqs go with it.
	t.Cleanup(func() { h.killServers() })
	return h
}

func (h *labHost) addBridge(t *testing.T, name string) {
	t.Helper()
	if err := h.h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}); err != nil {
		t.Fatalf("host %s: add bridge %s: %v", h.name, name, err)
	}
	h.up(t, name)
}

func (h *labHost) link(t *testing.T, name string) netlink.Link {
	t.Helper()
	l, err := h.h.LinkByName(name)
	if err != nil {
		t.Fatalf("host %s: link %s: %v", h.name, name, err)
	}
	return l
}

func (h *labHost) up(t *testing.T, name string) {
	t.Helper()
	if err := h.h.LinkSetUp(h.link(t, name)); err != nil {
		t.Fatalf("host %s: set %s up: %v", h.name, name, err)
	}
}

func (h *labHost) attach(t *testing.T, name string) { h.attachTo(t, labBridge, name) }

func (h *labHost) attachTo(t *testing.T, bridge, name string) {
	t.Helper()
	if err := h.h.LinkSetMaster(h.link(t, name), h.link(t, bridge)); err != nil {
		t.Fatalf("host %s: attach %s to the bridge: %v", h.name, name, err)
	}
	h.up(t, name)
}

// waitUp waits until port name carries frames: the kernel brings a
// bridge port up when it sees the carrier (both ends of a veth up),
// asynchronously.
func (h *labHost) waitUp(t *testing.T, name string) {
	t.Helper()
	waitOperUp(t, h.h, name)
}

func (h *labHost) killServers() {
	dirs, _ := filepath.Glob(filepath.Join(h.runDir, "*"))
	for _, d := range dirs {
		if pid, _ := running(d); pid != 0 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// tunnel joins the bridges of a and b with a veth pair named as VXLAN
// devices are, so the rules treat it as the link off the host.
func tunnel(t *testing.T, a, b *labHost) {
	t.Helper()
	va, vb := "vx"+a.name+b.name, "vx"+b.name+a.name
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: va}, PeerName: vb, PeerNamespace: netlink.NsFd(int(b.ns))}
	if err := a.h.LinkAdd(veth); err != nil {
		t.Fatalf("tunnel %s-%s: %v", a.name, b.name, err)
	}
	a.attach(t, va)
	b.attach(t, vb)
	a.waitUp(t, va)
	b.waitUp(t, vb)
}

// newVM makes a VM with mac whose NIC is on host h's bridge. The NIC
// is a namespace of its own between the guest and the hosts (a bridge
// "nic" with the guest's veth and one veth to the host it runs on), so
// that a migration moves the VM's port between hosts while the guest's
// link stays up, as in a live migration: a guest whose link went down
// would flush its ARP cache.
func newVM(t *testing.T, h *labHost, name, mac string) *labVM {
	t.Helper()
	return newVMOn(t, h, labBridge, name, mac)
}

// newVMOn makes a VM whose NIC is on bridge of host h.
func newVMOn(t *testing.T, h *labHost, bridge, name, mac string) *labVM {
	t.Helper()
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	vm := &labVM{name: name, ns: newNS(t), nicNS: newNS(t), mac: hw, port: "vt" + name, bridge: bridge}
	if vm.nic, err = netlink.NewHandleAt(vm.nicNS); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(vm.nic.Close)
	if err := vm.nic.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "nic"}}); err != nil {
		t.Fatalf("VM %s: NIC bridge: %v", name, err)
	}
	setUp(t, vm.nic, "nic")
	guest := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "guest"}, PeerName: "eth0",
		PeerHardwareAddr: hw, PeerNamespace: netlink.NsFd(int(vm.ns))}
	if err := vm.nic.LinkAdd(guest); err != nil {
		t.Fatalf("VM %s: guest link: %v", name, err)
	}
	plug(t, vm.nic, "nic", "guest")
	vh, err := netlink.NewHandleAt(vm.ns)
	if err != nil {
		t.Fatal(err)
	}
	defer vh.Close()
	setUp(t, vh, "lo")
	setUp(t, vh, "eth0")
	vm.plugInto(t, h)
	return vm
}

// plugInto joins the VM's NIC to host h's bridge by a veth pair: "to"
// and the host's name in the NIC, the VM's port name on the host.
func (vm *labVM) plugInto(t *testing.T, h *labHost) {
	t.Helper()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "to" + h.name}, PeerName: vm.port, PeerNamespace: netlink.NsFd(int(h.ns))}
	if err := vm.nic.LinkAdd(veth); err != nil {
		t.Fatalf("VM %s on host %s: %v", vm.name, h.name, err)
	}
	plug(t, vm.nic, "nic", "to"+h.name)
	h.attachTo(t, vm.bridge, vm.port)
	h.waitUp(t, vm.port)
	waitOperUp(t, vm.nic, "to"+h.name)
	vm.on = h
}

// migrate moves the VM's port to host to, as a live migration does: the
// guest keeps its NIC, its address and its ARP cache; the port is on
// the new host before it goes from the old one.
func (vm *labVM) migrate(t *testing.T, to *labHost) {
	t.Helper()
	from := vm.on
	vm.plugInto(t, to)
	l, err := vm.nic.LinkByName("to" + from.name)
	if err == nil {
		err = vm.nic.LinkDel(l)
	}
	if err != nil {
		t.Fatalf("VM %s: unplug from host %s: %v", vm.name, from.name, err)
	}
}

func setUp(t *testing.T, h *netlink.Handle, name string) {
	t.Helper()
	l, err := h.LinkByName(name)
	if err == nil {
		err = h.LinkSetUp(l)
	}
	if err != nil {
		t.Fatalf("set %s up: %v", name, err)
	}
}

// plug puts port on bridge br (both in h's namespace) and sets it up.
func plug(t *testing.T, h *netlink.Handle, br, port string) {
	t.Helper()
	b, err := h.LinkByName(br)
	if err != nil {
		t.Fatal(err)
	}
	l, err := h.LinkByName(port)
	if err == nil {
		err = h.LinkSetMaster(l, b)
	}
	if err != nil {
		t.Fatalf("attach %s to %s: %v", port, br, err)
	}
	setUp(t, h, port)
}

func waitOperUp(t *testing.T, h *netlink.Handle, name string) {
	t.Helper()
	waitFor(t, 5*time.Second, name+" up", func() bool {
		l, err := h.LinkByName(name)
		return err == nil && l.Attrs().OperState == netlink.OperUp
	})
}

func (vm *labVM) binding(ip, hostname string) Binding {
	return Binding{MAC: vm.mac, IP: netip.MustParseAddr(ip), Hostname: hostname}
}

// command is a command that runs in the VM's namespace.
func (vm *labVM) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "PATH=/usr/sbin:/usr/bin:/sbin:/bin")
	return cmd
}

func (vm *labVM) start(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := inNS(vm.ns, cmd.Start); err != nil {
		t.Fatalf("VM %s: start %v: %v", vm.name, cmd.Args, err)
	}
}

// dhcpScript is udhcpc's event script: it records each event with what
// the server said, and configures the address as a guest would.
const dhcpScript = `#!/bin/sh
case "$1" in
bound|renew) busybox ifconfig "$interface" "$ip" netmask "$subnet" ;;
deconfig) busybox ifconfig "$interface" 0.0.0.0 ;;
esac
echo "$1 ip=$ip mask=$mask router=$router dns=$dns mtu=$mtu hostname=$hostname serverid=$serverid lease=$lease" >> "$EVENTS"
`

// dhcpClient is a udhcpc for the VM's eth0 whose events go to a file.
type dhcpClient struct {
	vm     *labVM
	script string
	events string
}

func newClient(t *testing.T, vm *labVM) *dhcpClient {
	t.Helper()
	dir := t.TempDir()
	c := &dhcpClient{vm: vm, script: filepath.Join(dir, "script"), events: filepath.Join(dir, "events")}
	if err := os.WriteFile(c.script, []byte(dhcpScript), 0o755); err != nil {
		t.Fatal(err)
	}
	return c
}

// once runs udhcpc until it has a lease (3 discovers, a second apart)
// and returns the "bound" event's fields, or nil and udhcpc's output
// when it got none.
func (c *dhcpClient) once(t *testing.T) (map[string]string, string) {
	t.Helper()
	_ = os.Remove(c.events)
	out, err := c.vm.runWith(t, 20*time.Second, []string{"EVENTS=" + c.events},
		"busybox", "udhcpc", "-i", "eth0", "-O", "mtu", "-n", "-q", "-t", "3", "-T", "1", "-s", c.script)
	if err != nil {
		return nil, out
	}
	return c.last(t, "bound"), out
}

// last is the fields of the last event of kind in the events file.
func (c *dhcpClient) last(t *testing.T, kind string) map[string]string {
	t.Helper()
	b, _ := os.ReadFile(c.events)
	var got map[string]string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != kind {
			continue
		}
		got = map[string]string{}
		for _, kv := range f[1:] {
			k, v, _ := strings.Cut(kv, "=")
			got[k] = v
		}
	}
	return got
}

// count is how many events of kind the events file has.
func (c *dhcpClient) count(t *testing.T, kind string) int {
	t.Helper()
	b, _ := os.ReadFile(c.events)
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == kind {
			n++
		}
	}
	return n
}

func (vm *labVM) runWith(t *testing.T, timeout time.Duration, env []string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := vm.command(ctx, name, args...)
	cmd.Env = append(cmd.Env, env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	vm.start(t, cmd)
	err := cmd.Wait()
	return out.String(), err
}

// converge runs Converge for host h with the services and fails the
// test on an error.
func (h *labHost) converge(t *testing.T, want ...Service) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := Converge(ctx, h.ns, h.runDir, want); err != nil {
		t.Fatalf("host %s: Converge: %v", h.name, err)
	}
}

func (h *labHost) dir() string { return filepath.Join(h.runDir, labPG) }

// pid is the dnsmasq serving the lab's port group on h; the test fails
// when none runs.
func (h *labHost) pid(t *testing.T) int {
	t.Helper()
	pid, _ := running(h.dir())
	if pid == 0 {
		t.Fatalf("host %s: no dnsmasq runs for %s", h.name, labPG)
	}
	return pid
}

func (h *labHost) file(name string) string {
	b, _ := os.ReadFile(filepath.Join(h.dir(), name))
	return string(b)
}

// leases is what h's dnsmasq has leased to mac (its lease file's line).
func (h *labHost) lease(mac net.HardwareAddr) string {
	for _, line := range strings.Split(h.file(leaseFile), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[1] == mac.String() {
			return line
		}
	}
	return ""
}

// logged are the lines of h's dnsmasq log that name mac.
func (h *labHost) logged(mac net.HardwareAddr) []string {
	var lines []string
	for _, line := range strings.Split(h.file(logFile), "\n") {
		if strings.Contains(line, mac.String()) {
			lines = append(lines, line)
		}
	}
	return lines
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	if err != nil {
		return !errors.Is(err, syscall.ESRCH)
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// A zombie (state Z) is dead.
	_, rest, _ := strings.Cut(string(stat), ") ")
	return !strings.HasPrefix(rest, "Z")
}

// service is the lab's port group's service with bindings.
func service(bindings ...Binding) Service {
	return Service{
		PortGroup: labPG, Bridge: labBridge, Subnet: labSubnet, ServerIP: labServer,
		Router: netip.MustParseAddr("192.0.2.1"), DNS: []netip.Addr{netip.MustParseAddr("198.51.100.53")},
		MTU: 1450, LeaseSeconds: 600, Bindings: bindings,
	}
}
