package policy

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net"
	"sync"

	"github.com/vishvananda/netns"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/netconf"
)

// Port is one VM NIC whose policy the host enforces.
type Port struct {
	Tap    string           // the tap device's name
	MAC    net.HardwareAddr // the NIC's MAC, the only one it may use
	Policy netconf.Policy
}

// PortError is why one port's policy is not (fully) enforced. Converge
// returns them joined (errors.Join), so a caller can report per port with
// errors.As over the joined error's Unwrap() []error.
type PortError struct {
	Tap string
	Err error
}

func (e *PortError) Error() string { return fmt.Sprintf("port %s: %v", e.Tap, e.Err) }
func (e *PortError) Unwrap() error { return e.Err }

// IfbPrefix starts the name of every ifb device this package makes (one per
// port shaped in the Out direction). Other code must leave such devices
// alone: Converge removes those it no longer needs.
const IfbPrefix = "vdcifb"

// IfbName is the ifb device that shapes the traffic a tap receives from
// its VM: IfbPrefix and a hash of the tap's name, to fit IFNAMSIZ.
func IfbName(tap string) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(tap))
	return fmt.Sprintf("%s%08x", IfbPrefix, h.Sum32())
}

type options struct{ log *slog.Logger }

// Option changes how Converge works.
type Option func(*options)

// WithLogger logs what Converge changes (at Info) and what it leaves as is
// (at Debug).
func WithLogger(log *slog.Logger) Option { return func(o *options) { o.log = log } }

// mu serialises Converge: two at once on one namespace would undo each
// other's qdiscs half-way.
var mu sync.Mutex

// Converge makes the network namespace ns (0: the caller's) enforce
// exactly the policies of ports: it replaces the nftables table vdc as a
// whole and sets, changes or removes the tc qdiscs of every listed tap,
// and removes the qdiscs, filters and ifb devices it made for taps not
// listed. Ports are validated first; an invalid one (see Validate) changes
// nothing and is an error wrapping api.ErrInvalid. A listed tap that does
// not exist yet still gets its security rules (they match by name), but
// its shaping is a PortError. Errors are joined; each names what failed.
func Converge(ctx context.Context, ns netns.NsHandle, ports []Port, opts ...Option) error {
	o := options{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, opt := range opts {
		opt(&o)
	}
	if err := validateAll(ports); err != nil {
		return err
	}
	if ns < 0 {
		ns = 0
	}
	mu.Lock()
	defer mu.Unlock()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("converge port policies: %w", err)
	}
	if err := applyRules(ns, ports); err != nil {
		return fmt.Errorf("converge port policies: %w", err)
	}
	o.log.Debug("port security rules replaced", "table", "bridge "+TableName, "ports", len(ports))
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("converge port policies: %w", err)
	}
	return applyShapes(ctx, o.log, ns, ports)
}

// Validate says whether a port can be enforced: a tap name that fits
// IFNAMSIZ, a unicast Ethernet MAC, and shapes tbf can express.
func Validate(p Port) error {
	if p.Tap == "" || len(p.Tap) >= 16 {
		return fmt.Errorf("port %q: tap name must have 1 to 15 characters: %w", p.Tap, api.ErrInvalid)
	}
	if len(p.MAC) != 6 {
		return fmt.Errorf("port %s: MAC %q is not an Ethernet address: %w", p.Tap, p.MAC, api.ErrInvalid)
	}
	if p.MAC[0]&1 != 0 {
		return fmt.Errorf("port %s: MAC %s is a group address: %w", p.Tap, p.MAC, api.ErrInvalid)
	}
	for _, d := range []struct {
		name string
		s    netconf.Shape
	}{{"in", p.Policy.In}, {"out", p.Policy.Out}} {
		if err := validateShape(d.s); err != nil {
			return fmt.Errorf("port %s: %s shape: %w", p.Tap, d.name, err)
		}
	}
	return nil
}

func validateAll(ports []Port) error {
	taps := map[string]bool{}
	ifbs := map[string]string{}
	var errs []error
	for _, p := range ports {
		if err := Validate(p); err != nil {
			errs = append(errs, err)
			continue
		}
		if taps[p.Tap] {
			errs = append(errs, fmt.Errorf("port %s: listed twice: %w", p.Tap, api.ErrInvalid))
		}
		taps[p.Tap] = true
		if other, ok := ifbs[IfbName(p.Tap)]; ok {
			errs = append(errs, fmt.Errorf("ports %s and %s: same ifb name %s: %w", other, p.Tap, IfbName(p.Tap), api.ErrInvalid))
		}
		ifbs[IfbName(p.Tap)] = p.Tap
	}
	if len(errs) > 0 {
		return fmt.Errorf("converge port policies: %w", errors.Join(errs...))
	}
	return nil
}

// Enforcer is the netconf.PolicyEnforcer of the bridge backend: it
// enforces the ports' policies in the namespace NS (0: the caller's).
type Enforcer struct {
	NS  netns.NsHandle
	Log *slog.Logger
}

func (e Enforcer) Converge(ctx context.Context, ports []netconf.PortPolicy) error {
	ps := make([]Port, 0, len(ports))
	for _, p := range ports {
		ps = append(ps, Port{Tap: p.Tap, MAC: p.MAC, Policy: p.Policy})
	}
	var opts []Option
	if e.Log != nil {
		opts = append(opts, WithLogger(e.Log))
	}
	return Converge(ctx, e.NS, ps, opts...)
}
