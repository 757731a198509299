package hostd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/hostd/console"
	"github.com/flashvisor/flashvisor/hostd/vm"
	"github.com/flashvisor/flashvisor/hostd/vmconfig"
)

// VMs is what the API needs from the VM manager (*vm.Manager).
type VMs interface {
	List() []api.VM
	Get(name string) (api.VM, error)
	Create(ctx context.Context, req vm.CreateRequest) (api.VM, error)
	Register(ctx context.Context, datastore, path string) (api.VM, error)
	Unregister(ctx context.Context, name string) error
	Destroy(ctx context.Context, name string) error
	Reconfigure(ctx context.Context, name string, spec api.VMSpec) (api.VM, error)
	PowerOn(ctx context.Context, name string) (api.VM, error)
	PowerOff(ctx context.Context, name string) (api.VM, error)
	Shutdown(ctx context.Context, name string, timeout time.Duration) (api.VM, error)
	Reset(ctx context.Context, name string) (api.VM, error)
	Suspend(ctx context.Context, name string) (api.VM, error)
	Snapshots(name string) ([]api.Snapshot, error)
	CreateSnapshot(ctx context.Context, name, snap, description string) (api.Snapshot, error)
	RevertSnapshot(ctx context.Context, name, snap string) error
	DeleteSnapshot(ctx context.Context, name, snap string) error
	Screendump(ctx context.Context, name string) ([]byte, error)
	ConsoleHub(name string) (*console.Hub, error)
	VNCPath(name string) (string, error)
	// Adopt takes over VMs that outlived the previous hostd; Autostart
	// powers on the marked VMs (first start after boot only);
	// ShutdownAll stops every VM (host shutdown).
	Adopt(ctx context.Context)
	Autostart(ctx context.Context)
	ShutdownAll(ctx context.Context)
}

// OpenVMs builds the VM manager and the port groups once the datastores
// are mounted (the inventory lives on them). publish reports events.
type OpenVMs func(stateDir string, ds Datastores, publish func(kind, target, msg string)) (VMs, PortGroups, error)

func (s *Server) vmRoutes(v string) []route {
	p := v + "/vms"
	return []route{
		{"GET", p, s.withVMs(s.listVMs)},
		{"POST", p, s.withVMs(s.createVM)},
		{"POST", p + "/register", s.withVMs(s.registerVM)},
		{"GET", p + "/{name}", s.withVMs(s.getVM)},
		{"PUT", p + "/{name}", s.withVMs(s.reconfigureVM)},
		{"DELETE", p + "/{name}", s.withVMs(s.destroyVM)},
		{"POST", p + "/{name}/unregister", s.withVMs(s.unregisterVM)},
		{"POST", p + "/{name}/power/{op}", s.withVMs(s.powerVM)},
		{"GET", p + "/{name}/snapshots", s.withVMs(s.listSnapshots)},
		{"POST", p + "/{name}/snapshots", s.withVMs(s.createSnapshot)},
		{"POST", p + "/{name}/snapshots/{snap}/revert", s.withVMs(s.revertSnapshot)},
		{"DELETE", p + "/{name}/snapshots/{snap}", s.withVMs(s.deleteSnapshot)},
		{"GET", p + "/{name}/screenshot", s.withVMs(s.screenshot)},
		{"GET", p + "/{name}/console", s.withVMs(func(w http.ResponseWriter, r *http.Request) {
			console.SerialHandler(s.vms.ConsoleHub, s.log).ServeHTTP(w, r)
		})},
		{"GET", p + "/{name}/vnc", s.withVMs(func(w http.ResponseWriter, r *http.Request) {
			console.VNCHandler(s.vms.VNCPath, s.log).ServeHTTP(w, r)
		})},
	}
}

func (s *Server) withVMs(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.vms == nil {
			writeError(w, http.StatusServiceUnavailable, api.ErrUnavailable, "the VM manager is unavailable (see hostd's log)")
			return
		}
		h(w, r)
	}
}

// vmError is a VM failure with its API code (a task.CodedError too).
type vmError struct {
	err    error
	status int
	code   string
}

func (e *vmError) Error() string { return e.err.Error() }
func (e *vmError) Code() string  { return e.code }
func (e *vmError) Unwrap() error { return e.err }

func classifyVM(err error) *vmError {
	var ve *vmError
	if errors.As(err, &ve) {
		return ve
	}
	e := &vmError{err: err, status: http.StatusInternalServerError, code: api.ErrInternal}
	switch {
	case errors.Is(err, vm.ErrNotFound), errors.Is(err, vm.ErrNoSnapshot):
		e.status, e.code = http.StatusNotFound, api.ErrNotFound
	case errors.Is(err, vm.ErrExists):
		e.status, e.code = http.StatusConflict, api.ErrExists
	case errors.Is(err, vm.ErrInvalid):
		e.status, e.code = http.StatusBadRequest, api.ErrBadRequest
	case errors.Is(err, vm.ErrState):
		e.status, e.code = http.StatusConflict, api.ErrState
	case errors.Is(err, vm.ErrAdmission):
		e.status, e.code = http.StatusConflict, api.ErrAdmission
	case errors.Is(err, vm.ErrNoKVM):
		e.status, e.code = http.StatusConflict, api.ErrNoKVM
	case errors.Is(err, vm.ErrConflict):
		e.status, e.code = http.StatusConflict, api.ErrConflict
	}
	return e
}

func (s *Server) vmFail(w http.ResponseWriter, r *http.Request, err error) {
	e := classifyVM(err)
	if e.status == http.StatusInternalServerError {
		s.log.Error("VM request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeError(w, e.status, e.code, e.Error())
}

// vmName returns the validated {name}, or answers 400.
func vmName(w http.ResponseWriter, r *http.Request) (string, bool) {
	name := r.PathValue("name")
	if err := vmconfig.CheckName(name); err != nil {
		writeError(w, http.StatusBadRequest, api.ErrBadRequest, err.Error())
		return "", false
	}
	return name, true
}

// decodeBody reads and strictly decodes a JSON body, answering 4xx itself.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		bodyError(w, err)
		return false
	}
	if err := decodeStrict(body, v); err != nil {
		writeError(w, http.StatusBadRequest, api.ErrBadRequest, err.Error())
		return false
	}
	return true
}

// vmTask runs a VM operation as a task and answers 202 with it; errors in
// the task carry the same codes a synchronous call would.
func (s *Server) vmTask(w http.ResponseWriter, kind, target string, fn func(ctx context.Context) (any, error)) {
	t := s.tasks.Start(kind, target, func(ctx context.Context) (any, error) {
		res, err := fn(ctx)
		if err != nil {
			return nil, classifyVM(err)
		}
		return res, nil
	})
	writeJSON(w, http.StatusAccepted, t)
}

func (s *Server) listVMs(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.vms.List())
}

func (s *Server) getVM(w http.ResponseWriter, r *http.Request) {
	name, ok := vmName(w, r)
	if !ok {
		return
	}
	v, err := s.vms.Get(name)
	if err != nil {
		s.vmFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) createVM(w http.ResponseWriter, r *http.Request) {
	var req api.VMCreateRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if req.Datastore == "" {
		writeError(w, http.StatusBadRequest, api.ErrBadRequest, "datastore is required")
		return
	}
	if err := vmconfig.Validate(req.Spec); err != nil {
		writeError(w, http.StatusBadRequest, api.ErrBadRequest, err.Error())
		return
	}
	if _, err := s.vms.Get(req.Spec.Name); err == nil {
		writeError(w, http.StatusConflict, api.ErrExists, fmt.Sprintf("VM %q already exists", req.Spec.Name))
		return
	}
	s.vmTask(w, "vm.create", req.Spec.Name, func(ctx context.Context) (any, error) {
		return s.vms.Create(ctx, vm.CreateRequest{Datastore: req.Datastore, Spec: req.Spec})
	})
}

func (s *Server) registerVM(w http.ResponseWriter, r *http.Request) {
	var req api.VMRegisterRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if req.Datastore == "" || req.Path == "" {
		writeError(w, http.StatusBadRequest, api.ErrBadRequest, "datastore and path are required")
		return
	}
	v, err := s.vms.Register(r.Context(), req.Datastore, req.Path)
	if err != nil {
		s.vmFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) reconfigureVM(w http.ResponseWriter, r *http.Request) {
	name, ok := vmName(w, r)
	if !ok {
		return
	}
	var spec api.VMSpec
	if !decodeBody(w, r, &spec) {
		return
	}
	v, err := s.vms.Reconfigure(r.Context(), name, spec)
	if err != nil {
		s.vmFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) destroyVM(w http.ResponseWriter, r *http.Request) {
	name, ok := vmName(w, r)
	if !ok {
		return
	}
	if _, err := s.vms.Get(name); err != nil {
		s.vmFail(w, r, err)
		return
	}
	s.vmTask(w, "vm.destroy", name, func(ctx context.Context) (any, error) {
		return nil, s.vms.Destroy(ctx, name)
	})
}

func (s *Server) unregisterVM(w http.ResponseWriter, r *http.Request) {
	name, ok := vmName(w, r)
	if !ok {
		return
	}
	if err := s.vms.Unregister(r.Context(), name); err != nil {
		s.vmFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.Accepted{Message: name + " unregistered; its files are kept"})
}

// powerVM runs on, off, shutdown (?timeout=120s), reset and suspend as tasks.
func (s *Server) powerVM(w http.ResponseWriter, r *http.Request) {
	name, ok := vmName(w, r)
	if !ok {
		return
	}
	if _, err := s.vms.Get(name); err != nil {
		s.vmFail(w, r, err)
		return
	}
	op := r.PathValue("op")
	var fn func(ctx context.Context) (any, error)
	switch op {
	case "on":
		fn = func(ctx context.Context) (any, error) { return s.vms.PowerOn(ctx, name) }
	case "off":
		fn = func(ctx context.Context) (any, error) { return s.vms.PowerOff(ctx, name) }
	case "reset":
		fn = func(ctx context.Context) (any, error) { return s.vms.Reset(ctx, name) }
	case "suspend":
		fn = func(ctx context.Context) (any, error) { return s.vms.Suspend(ctx, name) }
	case "shutdown":
		var timeout time.Duration
		if v := r.URL.Query().Get("timeout"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 || d > time.Hour {
				writeError(w, http.StatusBadRequest, api.ErrBadRequest, fmt.Sprintf("query timeout=%q: want a duration up to 1h", v))
				return
			}
			timeout = d
		}
		fn = func(ctx context.Context) (any, error) { return s.vms.Shutdown(ctx, name, timeout) }
	default:
		writeError(w, http.StatusNotFound, api.ErrNotFound, fmt.Sprintf("power operation %q: want on, off, shutdown, reset or suspend", op))
		return
	}
	s.log.Info("VM power operation", "vm", name, "op", op, "remote", r.RemoteAddr)
	s.vmTask(w, "vm.power_"+op, name, fn)
}

func (s *Server) listSnapshots(w http.ResponseWriter, r *http.Request) {
	name, ok := vmName(w, r)
	if !ok {
		return
	}
	list, err := s.vms.Snapshots(name)
	if err != nil {
		s.vmFail(w, r, err)
		return
	}
	if list == nil {
		list = []api.Snapshot{}
	}
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) createSnapshot(w http.ResponseWriter, r *http.Request) {
	name, ok := vmName(w, r)
	if !ok {
		return
	}
	var req api.SnapshotRequest
	if !decodeBody(w, r, &req) {
		return
	}
	s.vmTask(w, "vm.snapshot_create", name, func(ctx context.Context) (any, error) {
		return s.vms.CreateSnapshot(ctx, name, req.Name, req.Description)
	})
}

func (s *Server) revertSnapshot(w http.ResponseWriter, r *http.Request) {
	name, ok := vmName(w, r)
	if !ok {
		return
	}
	snap := r.PathValue("snap")
	s.vmTask(w, "vm.snapshot_revert", name, func(ctx context.Context) (any, error) {
		return nil, s.vms.RevertSnapshot(ctx, name, snap)
	})
}

func (s *Server) deleteSnapshot(w http.ResponseWriter, r *http.Request) {
	name, ok := vmName(w, r)
	if !ok {
		return
	}
	snap := r.PathValue("snap")
	s.vmTask(w, "vm.snapshot_delete", name, func(ctx context.Context) (any, error) {
		return nil, s.vms.DeleteSnapshot(ctx, name, snap)
	})
}

func (s *Server) screenshot(w http.ResponseWriter, r *http.Request) {
	name, ok := vmName(w, r)
	if !ok {
		return
	}
	png, err := s.vms.Screendump(r.Context(), name)
	if err != nil {
		s.vmFail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "image/png")
	w.Write(png)
}

// startVMs opens the VM manager after the datastores are mounted, adopts
// running VMs and, on hostd's first start since boot, runs autostart.
func (s *Server) startVMs(ctx context.Context) {
	if s.o.OpenVMs == nil {
		return
	}
	vms, pgs, err := s.o.OpenVMs(s.stateDir, s.ds, func(kind, target, msg string) { s.o.Events.Publish(kind, target, msg) })
	if err != nil {
		s.log.Error("VM manager unavailable", "err", err)
	}
	s.vms, s.pgs = vms, pgs
	if s.vms == nil {
		return
	}
	s.vms.Adopt(ctx)
	marker := s.o.AutostartMarker
	if marker == "" {
		return
	}
	if _, err := os.Stat(marker); err == nil {
		s.log.Info("hostd restarted: autostart already ran since boot")
		return
	}
	if err := os.WriteFile(marker, []byte("done\n"), 0o644); err != nil {
		s.log.Warn("autostart marker", "err", err)
	}
	go s.autostart(context.WithoutCancel(ctx))
}

// autostart waits for the network (a VM powered on before the VEM agent
// answers fails to attach its vNICs), then powers the autostart VMs on.
func (s *Server) autostart(ctx context.Context) {
	if ready := s.o.NetworkReady; ready != nil {
		wait := s.o.AutostartNetworkWait
		if wait <= 0 {
			wait = 3 * time.Minute
		}
		select {
		case <-ready:
		case <-time.After(wait):
			s.log.Warn("autostart: the switch is not ready; powering VMs on anyway", "waited", wait)
		case <-ctx.Done():
			return
		}
	}
	s.vms.Autostart(ctx)
}

// stopVMs shuts every VM down when the host is going down (init's
// shutdown marker); a mere hostd restart leaves them running.
func (s *Server) stopVMs() {
	if s.vms == nil || s.o.ShutdownMarker == "" {
		return
	}
	if _, err := os.Stat(s.o.ShutdownMarker); err != nil {
		s.log.Info("hostd stopping; VMs keep running")
		return
	}
	s.log.Info("host shutting down: shutting VMs down")
	s.vms.ShutdownAll(context.Background())
}
