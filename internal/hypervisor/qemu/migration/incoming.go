package migration

import (
	"context"
	"fmt"
	"net"
	"strconv"
)

// Listen has the QEMU of a copy of vm being received (started with
// -incoming defer) listen for the state on address, and returns the URI
// the source sends it to.
func Listen(ctx context.Context, m Monitor, vm, address string) (string, error) {
	if err := m.Execute(ctx, "migrate-incoming", map[string]any{"uri": "tcp:" + net.JoinHostPort(address, "0")}, nil); err != nil {
		return "", fmt.Errorf("receive vm %s: %w", vm, err)
	}
	var st struct {
		SocketAddress []struct {
			Host string `json:"host"`
			Port string `json:"port"`
		} `json:"socket-address"`
	}
	if err := m.Execute(ctx, "query-migrate", nil, &st); err != nil {
		return "", err
	}
	if len(st.SocketAddress) == 0 {
		return "", fmt.Errorf("receive vm %s: QEMU does not say where it listens", vm)
	}
	return "tcp:" + net.JoinHostPort(address, st.SocketAddress[0].Port), nil
}

// ExportDisks serves the disks (their node names) of a copy being
// received over NBD on address, for the source to fill, and returns
// host:port.
func ExportDisks(ctx context.Context, m Monitor, address string, disks []string, tls bool) (string, error) {
	port, err := freePort(address)
	if err != nil {
		return "", err
	}
	// nbd-server-start takes the legacy socket address form ("data").
	args := map[string]any{"addr": map[string]any{"type": "inet", "data": map[string]any{"host": address, "port": strconv.Itoa(port)}}}
	if tls {
		args["tls-creds"] = TLSObject("server")
	}
	if err := m.Execute(ctx, "nbd-server-start", args, nil); err != nil {
		return "", err
	}
	for _, name := range disks {
		if err := m.Execute(ctx, "block-export-add", map[string]any{"type": "nbd", "id": "exp-" + name,
			"node-name": name, "name": name, "writable": true}, nil); err != nil {
			return "", err
		}
	}
	return net.JoinHostPort(address, strconv.Itoa(port)), nil
}

// freePort finds a TCP port free on an address (for NBD, which cannot
// report the port it picked).
func freePort(address string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(address, "0"))
	if err != nil {
		return 0, fmt.Errorf("find a free port on %s: %w", address, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
