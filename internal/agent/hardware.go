package agent

import (
	"fmt"
	"net/http"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/agent/agenthttp"
	"github.com/vdc-project/vdc/internal/hypervisor"
)

// HotAddRequest is the agent API's body for growing a running VM: the
// vCPUs and memory it is to have (0: as it is).
type HotAddRequest struct {
	CPUs        int   `json:"cpus,omitempty"`
	MemoryBytes int64 `json:"memoryBytes,omitempty"`
}

func (a *Agent) hardwareRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /agent/v1/vms/{id}/hot-add", a.hotAdd)
}

func (a *Agent) hotplugger() (hypervisor.Hotplugger, error) {
	h, ok := a.cfg.Driver.(hypervisor.Hotplugger)
	if !ok {
		return nil, fmt.Errorf("CPU and memory hot-add: %w", hypervisor.ErrNotSupported)
	}
	return h, nil
}

// POST /agent/v1/vms/{id}/hot-add: grows the running VM and saves its
// config with the new size, so that its next boot has it too.
func (a *Agent) hotAdd(w http.ResponseWriter, r *http.Request) {
	var req HotAddRequest
	if !agenthttp.Decode(w, r, &req) {
		return
	}
	hp, err := a.hotplugger()
	if err != nil {
		agenthttp.Fail(w, err)
		return
	}
	e, err := a.vms.Get(r.PathValue("id"))
	if err != nil {
		agenthttp.Fail(w, err)
		return
	}
	e.Op.Lock()
	defer e.Op.Unlock()
	if a.vms.IsIncoming(e) {
		agenthttp.Fail(w, fmt.Errorf("vm %s is being received by a migration: %w", e.Cfg.Name, hypervisor.ErrWrongState))
		return
	}
	res, err := hp.HotAdd(r.Context(), e.Cfg.ID, req.CPUs, req.MemoryBytes)
	if err != nil {
		agenthttp.Fail(w, err)
		return
	}
	cfg := a.vms.Config(e)
	cfg.CPUs, cfg.MemoryBytes = res.Hardware.TotalCPUs(), int64(res.Hardware.TotalMemory())
	if err := a.vms.SaveConfig(e, cfg); err != nil {
		agenthttp.Fail(w, err)
		return
	}
	agenthttp.Reply(w, http.StatusOK, res)
}

// runningHardware is what a running VM has now, for a copy that is to
// receive it (nil when the driver cannot tell or the VM is off).
func (a *Agent) runningHardware(r *http.Request, id string) *api.VMHardware {
	hp, err := a.hotplugger()
	if err != nil {
		return nil
	}
	hw, err := hp.Hardware(r.Context(), id)
	if err != nil {
		return nil
	}
	return &hw
}
