// Package vmnics is the agent API's calls that add, change and remove a
// defined VM's NICs, live while it runs: each saves the VM's config with
// its NICs' taps named (as for a define: Routes.Plug), has the host's network take
// them (a running VM's new or moved tap made and attached before QEMU
// hears of it, through the network manager's Ensure; the next converge
// otherwise) and tells the driver (hypervisor.NICs); when anything fails
// the old config comes back and the network follows it again.
package vmnics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/agent/agenthttp"
	"github.com/vdc-project/vdc/internal/agent/network"
	"github.com/vdc-project/vdc/internal/agent/registry"
	"github.com/vdc-project/vdc/internal/hypervisor"
)

// Network is what the calls need of the host's network manager.
type Network interface {
	// Ensure converges the host's network with vm's NICs as given.
	Ensure(ctx context.Context, vm hypervisor.VMConfig) error
	// Changed asks for a converge soon.
	Changed()
}

// Routes serves the calls for the VMs of one host.
type Routes struct {
	VMs    *registry.Registry
	Driver hypervisor.Driver
	Net    Network // nil: the host has no network manager
	// Plug names the taps of a VM's NICs on switches (and whatever else
	// the host's switches need of them), as the agent does before a VM
	// is defined; nil: network.PlugNICs.
	Plug func(cfg *hypervisor.VMConfig)
	Log  *slog.Logger
}

// Register adds the calls to mux.
func (rt *Routes) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /agent/v1/vms/{id}/nics", rt.addNIC)
	mux.HandleFunc("PUT /agent/v1/vms/{id}/nics/{nic}", rt.updateNIC)
	mux.HandleFunc("DELETE /agent/v1/vms/{id}/nics/{nic}", rt.removeNIC)
}

func (rt *Routes) nicDriver() (hypervisor.NICs, error) {
	d, ok := rt.Driver.(hypervisor.NICs)
	if !ok {
		return nil, fmt.Errorf("adding, changing and removing NICs: %w", hypervisor.ErrNotSupported)
	}
	return d, nil
}

// nicChange is one change of a VM's NICs: edit changes a copy of its
// config (or refuses); apply tells the driver, given the config as edited (taps
// named). With unplugFirst (a removal) the driver lets go of the NIC
// before the host's network does; else the host's network is ready
// first (a running VM's new or moved tap made and attached before QEMU
// opens it).
type nicChange struct {
	edit        func(cfg *hypervisor.VMConfig) error
	apply       func(ctx context.Context, drv hypervisor.NICs, cfg hypervisor.VMConfig) error
	unplugFirst bool
}

// changeNICs runs a change of a VM's NICs under the VM's lock and
// answers with its state. The config is saved as changed and the host's
// network converged to it; when anything fails the old config comes back
// and the network follows it again.
func (rt *Routes) changeNICs(w http.ResponseWriter, r *http.Request, body any, c nicChange) {
	if body != nil && !agenthttp.Decode(w, r, body) {
		return
	}
	drv, err := rt.nicDriver()
	if err != nil {
		agenthttp.Fail(w, err)
		return
	}
	e, err := rt.VMs.Get(r.PathValue("id"))
	if err != nil {
		agenthttp.Fail(w, err)
		return
	}
	e.Op.Lock()
	defer e.Op.Unlock()
	if rt.VMs.IsIncoming(e) {
		agenthttp.Fail(w, fmt.Errorf("vm %s is being received by a migration: %w", e.Cfg.Name, hypervisor.ErrWrongState))
		return
	}
	old := rt.VMs.Config(e)
	cfg := old
	cfg.NICs = slices.Clone(old.NICs)
	err = c.edit(&cfg)
	if err == nil {
		if rt.Plug != nil {
			rt.Plug(&cfg)
		} else {
			network.PlugNICs(&cfg)
		}
		err = rt.applyNICs(r.Context(), e, drv, old, cfg, c)
	}
	if err != nil {
		agenthttp.Fail(w, err)
		return
	}
	st, err := rt.VMs.Observe(r.Context(), cfg.ID, e)
	if err != nil {
		agenthttp.Fail(w, err)
		return
	}
	agenthttp.Reply(w, http.StatusOK, st)
}

func (rt *Routes) applyNICs(ctx context.Context, e *registry.Entry, drv hypervisor.NICs, old, cfg hypervisor.VMConfig, c nicChange) error {
	if c.unplugFirst {
		if err := c.apply(ctx, drv, cfg); err != nil {
			return err
		}
		err := rt.VMs.SaveConfig(e, cfg)
		rt.netChanged()
		return err
	}
	if err := rt.VMs.SaveConfig(e, cfg); err != nil {
		return err
	}
	err := rt.readyPorts(ctx, cfg)
	if err == nil {
		err = c.apply(ctx, drv, cfg)
	}
	if err != nil {
		if serr := rt.VMs.SaveConfig(e, old); serr != nil {
			rt.Log.Error("cannot restore a VM's config after a failed NIC change", "vm", cfg.Name, "err", serr)
		}
		rt.netChanged()
	}
	return err
}

// readyPorts has the host's network take a VM's NICs as cfg has them:
// at once for a running VM on a switch (its taps made, attached, moved
// or set down before QEMU is told), else at the next converge.
func (rt *Routes) readyPorts(ctx context.Context, cfg hypervisor.VMConfig) error {
	st, err := rt.Driver.State(ctx, cfg.ID)
	if err != nil {
		return err
	}
	if rt.Net == nil || st.Power == hypervisor.StateOff {
		rt.netChanged()
		return nil
	}
	if err := rt.Net.Ensure(ctx, cfg); err != nil {
		return agenthttp.WithClass(err, api.ErrConflict)
	}
	return nil
}

func (rt *Routes) netChanged() {
	if rt.Net != nil {
		rt.Net.Changed()
	}
}

// POST /agent/v1/vms/{id}/nics: adds a NIC, hot-plugged when the VM
// runs. Adding one the VM's config has (same name and MAC) again makes
// sure the driver has it too: the server asks again after a restart.
func (rt *Routes) addNIC(w http.ResponseWriter, r *http.Request) {
	var n hypervisor.NICConfig
	again := false
	rt.changeNICs(w, r, &n, nicChange{
		edit: func(cfg *hypervisor.VMConfig) error {
			if i := hypervisor.NICIndex(*cfg, n.Name); i >= 0 {
				if cfg.NICs[i].MAC != n.MAC {
					return fmt.Errorf("add %s to vm %s: it has a NIC of that name: %w", n.Name, cfg.Name, hypervisor.ErrInvalid)
				}
				again = true
				return nil
			}
			cfg.NICs = append(cfg.NICs, n)
			return nil
		},
		apply: func(ctx context.Context, drv hypervisor.NICs, cfg hypervisor.VMConfig) error {
			err := drv.AddNIC(ctx, cfg.ID, cfg.NICs[hypervisor.NICIndex(cfg, n.Name)])
			if again && errors.Is(err, hypervisor.ErrInvalid) {
				return nil // the driver has it
			}
			return err
		},
	})
}

// PUT /agent/v1/vms/{id}/nics/{nic}: changes a NIC's port group or link
// state, live while the VM runs.
func (rt *Routes) updateNIC(w http.ResponseWriter, r *http.Request) {
	var n hypervisor.NICConfig
	rt.changeNICs(w, r, &n, nicChange{
		edit: func(cfg *hypervisor.VMConfig) error {
			n.Name = r.PathValue("nic")
			i := hypervisor.NICIndex(*cfg, n.Name)
			if i < 0 {
				return fmt.Errorf("update: vm %s has no NIC %s: %w", cfg.Name, n.Name, hypervisor.ErrInvalid)
			}
			n.Slot = cfg.NICs[i].Slot
			cfg.NICs[i] = n
			return nil
		},
		apply: func(ctx context.Context, drv hypervisor.NICs, cfg hypervisor.VMConfig) error {
			return drv.UpdateNIC(ctx, cfg.ID, cfg.NICs[hypervisor.NICIndex(cfg, n.Name)])
		},
	})
}

// DELETE /agent/v1/vms/{id}/nics/{nic}: unplugs a NIC from a running VM
// (once its guest let go of it), then its tap goes.
func (rt *Routes) removeNIC(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("nic")
	rt.changeNICs(w, r, nil, nicChange{
		unplugFirst: true,
		edit: func(cfg *hypervisor.VMConfig) error {
			i := hypervisor.NICIndex(*cfg, name)
			if i < 0 {
				return fmt.Errorf("remove: vm %s has no NIC %s: %w", cfg.Name, name, hypervisor.ErrInvalid)
			}
			cfg.NICs = slices.Delete(cfg.NICs, i, i+1)
			return nil
		},
		apply: func(ctx context.Context, drv hypervisor.NICs, cfg hypervisor.VMConfig) error {
			return drv.RemoveNIC(ctx, cfg.ID, name)
		},
	})
}
