package qemu

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"github.com/vdc-project/vdc/internal/hypervisor"
)

// ConsoleLog returns the end of what the serial console printed, this
// boot's output after the previous boot's.
func (d *Driver) ConsoleLog(ctx context.Context, id string, max int) ([]byte, error) {
	v, err := d.get(id)
	if err != nil {
		return nil, err
	}
	var out []byte
	for _, f := range []string{v.p.ConsoleLog() + ".1", v.p.ConsoleLog()} {
		b, err := os.ReadFile(f)
		if err != nil && !os.IsNotExist(err) {
			return nil, fmt.Errorf("console log of vm %s: %w", v.cfg.Name, err)
		}
		out = append(out, b...)
	}
	if max > 0 && len(out) > max {
		out = out[len(out)-max:]
	}
	return out, nil
}

// ConsoleAttach connects to the serial console of a running VM. QEMU serves
// one console client at a time.
func (d *Driver) ConsoleAttach(ctx context.Context, id string) (io.ReadWriteCloser, error) {
	v, err := d.get(id)
	if err != nil {
		return nil, err
	}
	if err := v.wrongState("attach to the console of", hypervisor.StateOn, hypervisor.StateSuspended); err != nil {
		return nil, err
	}
	var dialer net.Dialer
	c, err := dialer.DialContext(ctx, "unix", v.p.Console())
	if err != nil {
		return nil, fmt.Errorf("console of vm %s: %w", v.cfg.Name, err)
	}
	return c, nil
}

// DisplayAttach connects to the running VM's VNC display: the unix socket
// QEMU serves it on. Nothing listens on TCP.
func (d *Driver) DisplayAttach(ctx context.Context, id string) (io.ReadWriteCloser, error) {
	v, err := d.get(id)
	if err != nil {
		return nil, err
	}
	if err := v.wrongState("attach to the display of", hypervisor.StateOn, hypervisor.StateSuspended); err != nil {
		return nil, err
	}
	addr := v.State().VNC
	sock, ok := strings.CutPrefix(addr, "unix:")
	switch {
	case addr == "" && v.cfg.VNC:
		return nil, fmt.Errorf("vm %s has no VNC display yet: VNC was turned on after it started, and applies at its next power-on: %w", v.cfg.Name, hypervisor.ErrWrongState)
	case addr == "":
		return nil, fmt.Errorf("vm %s has no VNC display (turn it on with vdc vm update %s --vnc on; it applies at the next power-on): %w", v.cfg.Name, v.cfg.Name, hypervisor.ErrWrongState)
	case !ok:
		return nil, fmt.Errorf("vm %s serves its display on TCP %s (started by an older vdc): restart it to have it on a unix socket: %w", v.cfg.Name, addr, hypervisor.ErrWrongState)
	}
	var dialer net.Dialer
	c, err := dialer.DialContext(ctx, "unix", sock)
	if err != nil {
		return nil, fmt.Errorf("display of vm %s: %w", v.cfg.Name, err)
	}
	return c, nil
}
