// Package agent is the host agent (`vdc agent`): it joins the management
// server once with a join token, then heartbeats over mutual TLS (renewing
// its short-lived certificate as it goes, see certs.go), keeps a
// registry of the VMs defined on its host in its data dir, and serves the
// server's requests (define, power, delete) through a hypervisor driver.
// VMs outlive the agent: a restarted agent re-attaches to them.
//
// Client is the server's side of the same API.
//
// Subpackages: registry keeps the host's VMs (configs, reported states,
// copies being received), hostha is the host's part of HA (policy, leases,
// isolation response), staging serves the staging area of imports and
// exports (its part of the API), agenthttp what all the handlers share.
package agent
