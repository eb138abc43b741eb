package server

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/coder/websocket"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/agent"
	"github.com/vdc-project/vdc/internal/control/hosts"
)

// pathVM finds the VM named in the path (with the latest writes seen) and
// its host, which must be connected for anything to be done with the VM.
func (s *Server) pathVM(r *http.Request) (*api.VM, *api.Host, error) {
	if err := s.cache.Sync(r.Context()); err != nil {
		return nil, nil, err
	}
	o, err := s.inv.Lookup(api.KindVM, r.PathValue("name"))
	if err != nil {
		return nil, nil, err
	}
	vm := o.(*api.VM)
	h, err := s.inv.VMHost(vm)
	return vm, h, err
}

// runningVM is pathVM for a VM that must be running.
func (s *Server) runningVM(r *http.Request, what string) (*api.VM, *api.Host, error) {
	vm, h, err := s.pathVM(r)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", what, err)
	}
	if vm.Status.PowerState != api.PowerOn && vm.Status.PowerState != api.PowerSuspended {
		return nil, nil, api.Errorf(api.ErrConflict, "%s: vm %s is %s", what, vm.Metadata.Name, vm.Status.PowerState)
	}
	return vm, h, nil
}

// POST /api/v1/vms/{name}/exec runs a program in the guest, as `qm guest
// exec` does, and records a task for the audit trail.
func (s *Server) execVM(w http.ResponseWriter, r *http.Request) error {
	var req api.ExecRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if len(req.Command) == 0 || req.Command[0] == "" {
		return api.Errorf(api.ErrInvalid, "command is empty: give the program and its arguments")
	}
	if req.TimeoutSeconds == 0 {
		req.TimeoutSeconds = 60
	}
	if req.TimeoutSeconds < 1 || req.TimeoutSeconds > 3600 {
		return api.Errorf(api.ErrInvalid, "timeoutSeconds must be between 1 and 3600, got %d", req.TimeoutSeconds)
	}
	if len(req.Input) > 1<<20 {
		return api.Errorf(api.ErrInvalid, "input is larger than 1 MiB")
	}
	vm, h, err := s.runningVM(r, "exec")
	if err != nil {
		return err
	}
	out, err := s.vms.Exec(r.Context(), vm, h, req)
	if err != nil {
		return err
	}
	reply(w, http.StatusOK, out)
	return nil
}

// GET /api/v1/vms/{name}/console/log?bytes=N
func (s *Server) consoleLog(w http.ResponseWriter, r *http.Request) error {
	n := 64 << 10
	if v := r.URL.Query().Get("bytes"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 || n > 16<<20 {
			return api.Errorf(api.ErrInvalid, "bytes must be between 1 and 16 MiB, got %q", v)
		}
	}
	vm, h, err := s.pathVM(r)
	if err != nil {
		return err
	}
	b, err := s.vms.ConsoleLog(r.Context(), vm, h, n)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write(b)
	return nil
}

// GET /api/v1/vms/{name}/console: the serial console over a websocket,
// relayed to the VM's host.
func (s *Server) console(w http.ResponseWriter, r *http.Request) error {
	return s.relayStream(w, r, "console", s.agents.Console)

}

// GET /api/v1/vms/{name}/vnc: the VNC display over a websocket, relayed
// to the VM's host over its mutual-TLS agent API. Only authenticated API
// clients reach it: QEMU listens on no TCP port.
func (s *Server) vnc(w http.ResponseWriter, r *http.Request) error {
	return s.relayStream(w, r, "VNC display", s.agents.VNC)

}

// relayStream bridges a client's websocket to one of a running VM's
// streams on its host.
func (s *Server) relayStream(w http.ResponseWriter, r *http.Request, what string, dial func(context.Context, agent.Target, string) (*websocket.Conn, error)) error {
	vm, h, err := s.runningVM(r, what)
	if err != nil {
		return err
	}
	dctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	hostWS, err := dial(dctx, hosts.TargetOf(h), vm.Metadata.ID)
	cancel()
	if err != nil {
		return err
	}
	defer hostWS.CloseNow()
	hostWS.SetReadLimit(1 << 20)
	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		return nil
	}
	defer ws.CloseNow()
	ws.SetReadLimit(1 << 20)
	ctx, stop := context.WithCancel(r.Context())
	defer stop()
	relay := func(from, to *websocket.Conn) {
		defer stop()
		for {
			typ, b, err := from.Read(ctx)
			if err != nil {
				return
			}
			if err := to.Write(ctx, typ, b); err != nil {
				return
			}
		}
	}
	go relay(hostWS, ws)
	relay(ws, hostWS)
	return nil
}
