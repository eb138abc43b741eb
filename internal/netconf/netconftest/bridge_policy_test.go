package netconftest_test

import (
	"log/slog"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/vdc-project/vdc/internal/netconf"
	"github.com/vdc-project/vdc/internal/netconf/bridge"
	"github.com/vdc-project/vdc/internal/netconf/netconftest"
	"github.com/vdc-project/vdc/internal/netconf/policy"
)

// The bridge backend passes the policy cases with its policy enforcer,
// as the agent runs it (the ovs backend runs them in its own package).
func TestBridgePolicyConformance(t *testing.T) {
	netconftest.RunPolicy(t, func(t *testing.T, ns netns.NsHandle) netconf.Backend {
		b, err := bridge.New(bridge.Options{NetNS: ns, Logger: slog.New(slog.DiscardHandler), Policy: policy.Enforcer{NS: ns}})
		if err != nil {
			t.Fatalf("new bridge backend: %v", err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	})
}
