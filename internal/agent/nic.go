package agent

import (
	"context"
	"net/http"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/hypervisor"
)

// AddNIC adds a NIC to a VM, hot-plugged when it runs.
func (c *Client) AddNIC(ctx context.Context, h Target, vmID string, n hypervisor.NICConfig) (api.AgentVMState, error) {
	var st api.AgentVMState
	err := c.do(ctx, h, http.MethodPost, "/agent/v1/vms/"+vmID+"/nics", n, &st)
	return st, err
}

// UpdateNIC changes a VM's NIC (named n.Name) to n.
func (c *Client) UpdateNIC(ctx context.Context, h Target, vmID string, n hypervisor.NICConfig) (api.AgentVMState, error) {
	var st api.AgentVMState
	err := c.do(ctx, h, http.MethodPut, "/agent/v1/vms/"+vmID+"/nics/"+n.Name, n, &st)
	return st, err
}

// RemoveNIC removes a VM's NIC, unplugged when it runs.
func (c *Client) RemoveNIC(ctx context.Context, h Target, vmID, nic string) (api.AgentVMState, error) {
	var st api.AgentVMState
	err := c.do(ctx, h, http.MethodDelete, "/agent/v1/vms/"+vmID+"/nics/"+nic, nil, &st)
	return st, err
}
