package proccmd

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/spf13/cobra"

	"github.com/vdc-project/vdc/internal/lab"
	"github.com/vdc-project/vdc/internal/server"
)

// labFlags choose whether vdc up gives each host its own network
// namespace on a lab network (--netns auto|on|off).
type labFlags struct{ mode string }

func (l *labFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&l.mode, "netns", "auto", "give each host its own network namespace on a lab network, so that VM networks cross hosts as between machines: on, off, or auto (on as root with real VMs)")
}

// pick is the lab of a vdc up on data with driver, or nil for none.
func (l *labFlags) pick(driver, data string) (*lab.Lab, error) {
	switch l.mode {
	case "off":
		return nil, nil
	case "on", "auto":
	default:
		return nil, fmt.Errorf("--netns must be on, off or auto, got %q", l.mode)
	}
	why := lab.Available()
	if why == nil && driver != "qemu" {
		why = fmt.Errorf("the %s driver runs no real VMs", driver)
	}
	if why != nil {
		if l.mode == "on" {
			return nil, fmt.Errorf("--netns on: %w", why)
		}
		return nil, nil
	}
	return lab.For(data), nil
}

// labListen moves a server listening on loopback onto the lab bridge,
// where the hosts' namespaces reach it.
func labListen(l *lab.Lab, cfg *server.Config) error {
	host, port, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return fmt.Errorf("--listen %q: %w", cfg.Listen, err)
	}
	if ip, err := netip.ParseAddr(host); host == "" || host == "localhost" || (err == nil && ip.IsLoopback()) {
		cfg.Listen = net.JoinHostPort(l.ServerIP().String(), port)
	}
	return nil
}
