package hostd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/datastore"
)

// Datastores is what the API needs from the datastore manager
// (*datastore.Manager).
type Datastores interface {
	Disks() ([]api.Disk, error)
	List() ([]api.Datastore, error)
	Get(name string) (api.Datastore, error)
	Create(ctx context.Context, req api.DatastoreCreateRequest) (api.Datastore, error)
	Remove(ctx context.Context, name string, force bool) error
	Mount(name string) error
	Unmount(name string) error
	// MountAll runs once at startup; Rescan runs it again.
	MountAll(ctx context.Context) error
	Rescan(ctx context.Context) error
}

// Task kinds of the datastore operations.
const (
	TaskDatastoreCreate = "datastore.create"
	TaskDatastoreRemove = "datastore.remove"
)

func (s *Server) storageRoutes(v string) []route {
	return []route{
		{"GET", v + "/storage/disks", s.withDatastores(s.listDisks)},
		{"POST", v + "/storage/rescan", s.withDatastores(s.rescan)},
		{"GET", v + "/datastores", s.withDatastores(s.listDatastores)},
		{"POST", v + "/datastores", s.withDatastores(s.createDatastore)},
		{"GET", v + "/datastores/{name}", s.withDatastores(s.getDatastore)},
		{"DELETE", v + "/datastores/{name}", s.withDatastores(s.removeDatastore)},
		{"POST", v + "/datastores/{name}/mount", s.withDatastores(s.mountDatastore)},
		{"POST", v + "/datastores/{name}/unmount", s.withDatastores(s.unmountDatastore)},
	}
}

// openDatastores asks Options.OpenDatastores for the manager once the state
// directory is known. Without one hostd still serves everything else, so an
// operator can reach the host to repair it.
func (s *Server) openDatastores() {
	if s.o.OpenDatastores != nil {
		s.ds = s.o.OpenDatastores(s.stateDir)
	}
	if s.ds == nil {
		s.log.Warn("no datastore manager: datastore endpoints answer 503")
	}
}

// mountDatastores mounts the known datastores before the API serves, so VMs
// find their files. A datastore that cannot be mounted is logged and listed
// with its problem; it never keeps the host's API down.
func (s *Server) mountDatastores(ctx context.Context) {
	if s.ds == nil {
		return
	}
	if err := s.ds.MountAll(ctx); err != nil {
		for _, e := range unjoin(err) {
			s.log.Error("datastore not mounted", "err", e)
		}
	}
	list, err := s.ds.List()
	if err != nil {
		s.log.Error("list datastores", "err", err)
		return
	}
	for _, d := range list {
		s.log.Info("datastore", "name", d.Name, "uuid", d.UUID, "device", d.Device, "status", d.Status, "message", d.Message)
	}
}

// unjoin splits an errors.Join result so each problem gets its own log line.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// withDatastores answers 503 when hostd runs without a datastore manager.
func (s *Server) withDatastores(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.ds == nil {
			writeError(w, http.StatusServiceUnavailable, api.ErrUnavailable,
				"datastores are unavailable: their state could not be loaded (see hostd's log)")
			return
		}
		h(w, r)
	}
}

// dsError is a datastore failure with its API code, so a task reports the
// same code a synchronous call would answer with (task.CodedError).
type dsError struct {
	err    error
	status int
	code   string
	msg    string
}

func (e *dsError) Error() string { return e.msg }
func (e *dsError) Code() string  { return e.code }
func (e *dsError) Unwrap() error { return e.err }

// classify maps the datastore package's sentinel errors to stable API
// codes. 409s say whether force would override them, because the fix the
// operator needs differs: repeat with force, or change the host first.
func classify(err error) *dsError {
	var de *dsError
	if errors.As(err, &de) {
		return de
	}
	e := &dsError{err: err, status: http.StatusInternalServerError, code: api.ErrInternal, msg: err.Error()}
	switch {
	case errors.Is(err, datastore.ErrNotFound), errors.Is(err, datastore.ErrNoDevice):
		e.status, e.code = http.StatusNotFound, api.ErrNotFound
	case errors.Is(err, datastore.ErrInvalidName):
		e.status, e.code = http.StatusBadRequest, api.ErrBadRequest
	case errors.Is(err, datastore.ErrExists):
		e.status, e.code = http.StatusConflict, api.ErrExists
	case errors.Is(err, datastore.ErrConflict), errors.Is(err, datastore.ErrMissing):
		e.status, e.code = http.StatusConflict, api.ErrConflict
	case errors.Is(err, datastore.ErrStatePartition), errors.Is(err, datastore.ErrMounted):
		e.status, e.code = http.StatusConflict, api.ErrInUse
		e.msg += " (force cannot override this)"
	case errors.Is(err, syscall.EBUSY):
		// The kernel refuses to unmount a filesystem with open files.
		e.status, e.code = http.StatusConflict, api.ErrInUse
		e.msg += " (files are open on it, e.g. a running VM)"
	case errors.Is(err, datastore.ErrNotBlank), errors.Is(err, datastore.ErrHasDatastore), errors.Is(err, datastore.ErrNotEmpty):
		e.status, e.code = http.StatusConflict, api.ErrForceRequired
		e.msg += " (repeat with force to override; the data on it is lost)"
	}
	return e
}

func (s *Server) datastoreError(w http.ResponseWriter, r *http.Request, err error) {
	e := classify(err)
	if e.status == http.StatusInternalServerError {
		s.log.Error("datastore request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeError(w, e.status, e.code, e.msg)
}

// datastoreName returns the validated {name}, or answers 400.
func datastoreName(w http.ResponseWriter, r *http.Request) (string, bool) {
	name := r.PathValue("name")
	if err := datastore.ValidName(name); err != nil {
		writeError(w, http.StatusBadRequest, api.ErrBadRequest, err.Error())
		return "", false
	}
	return name, true
}

func (s *Server) listDisks(w http.ResponseWriter, r *http.Request) {
	disks, err := s.ds.Disks()
	if err != nil {
		s.datastoreError(w, r, err)
		return
	}
	if disks == nil {
		disks = []api.Disk{}
	}
	writeJSON(w, http.StatusOK, disks)
}

// rescan answers with the disks found. Datastores that could not be mounted
// are not a failure of the rescan: List reports them with their problem.
func (s *Server) rescan(w http.ResponseWriter, r *http.Request) {
	if err := s.ds.Rescan(r.Context()); err != nil {
		for _, e := range unjoin(err) {
			s.log.Warn("rescan: datastore not mounted", "err", e)
		}
	}
	s.listDisks(w, r)
}

func (s *Server) listDatastores(w http.ResponseWriter, r *http.Request) {
	list, err := s.ds.List()
	if err != nil {
		s.datastoreError(w, r, err)
		return
	}
	if list == nil {
		list = []api.Datastore{}
	}
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) getDatastore(w http.ResponseWriter, r *http.Request) {
	name, ok := datastoreName(w, r)
	if !ok {
		return
	}
	d, err := s.ds.Get(name)
	if err != nil {
		s.datastoreError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

// parseDatastoreCreate decodes and validates an api.DatastoreCreateRequest:
// one JSON object, no unknown fields, a valid name and a device.
func parseDatastoreCreate(body []byte) (api.DatastoreCreateRequest, error) {
	var req api.DatastoreCreateRequest
	if err := decodeStrict(body, &req); err != nil {
		return api.DatastoreCreateRequest{}, err
	}
	if err := datastore.ValidName(req.Name); err != nil {
		return api.DatastoreCreateRequest{}, err
	}
	if req.Device == "" {
		return api.DatastoreCreateRequest{}, errors.New("device is empty: name a disk or partition (sdb, /dev/nvme0n1p3)")
	}
	if strings.ContainsAny(req.Device, "\x00\n") || len(req.Device) > 256 {
		return api.DatastoreCreateRequest{}, fmt.Errorf("device %q is not a device name", req.Device)
	}
	return req, nil
}

// createDatastore formats in a task: mke2fs on a large disk takes a while.
// What can be refused at once (a bad body, a name in use) is answered
// synchronously; the rest of the checks run in the task under the
// manager's lock, where they cannot race.
func (s *Server) createDatastore(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		bodyError(w, err)
		return
	}
	req, err := parseDatastoreCreate(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, api.ErrBadRequest, err.Error())
		return
	}
	if _, err := s.ds.Get(req.Name); err == nil {
		s.datastoreError(w, r, fmt.Errorf("create datastore %s: %w", req.Name, datastore.ErrExists))
		return
	}
	s.log.Info("datastore create requested", "name", req.Name, "device", req.Device, "force", req.Force, "remote", r.RemoteAddr)
	t := s.tasks.Start(TaskDatastoreCreate, req.Name, func(ctx context.Context) (any, error) {
		d, err := s.ds.Create(ctx, req)
		if err != nil {
			return nil, classify(err)
		}
		return d, nil
	})
	writeJSON(w, http.StatusAccepted, t)
}

func (s *Server) removeDatastore(w http.ResponseWriter, r *http.Request) {
	name, ok := datastoreName(w, r)
	if !ok {
		return
	}
	force, err := boolQuery(r, "force")
	if err != nil {
		writeError(w, http.StatusBadRequest, api.ErrBadRequest, err.Error())
		return
	}
	// An unknown name is answered at once. List, not Get: a datastore in
	// conflict is not Get's but can still be removed.
	if list, err := s.ds.List(); err == nil && !slices.ContainsFunc(list, func(d api.Datastore) bool { return d.Name == name }) {
		s.datastoreError(w, r, fmt.Errorf("remove datastore %s: %w", name, datastore.ErrNotFound))
		return
	}
	s.log.Warn("datastore remove requested", "name", name, "force", force, "remote", r.RemoteAddr)
	t := s.tasks.Start(TaskDatastoreRemove, name, func(ctx context.Context) (any, error) {
		if err := s.ds.Remove(ctx, name, force); err != nil {
			return nil, classify(err)
		}
		return nil, nil
	})
	writeJSON(w, http.StatusAccepted, t)
}

func boolQuery(r *http.Request, key string) (bool, error) {
	v := r.URL.Query().Get(key)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("query %s=%q: want true or false", key, v)
	}
	return b, nil
}

func (s *Server) mountDatastore(w http.ResponseWriter, r *http.Request) {
	s.mountAction(w, r, "mount", s.ds.Mount)
}

func (s *Server) unmountDatastore(w http.ResponseWriter, r *http.Request) {
	s.mountAction(w, r, "unmount", s.ds.Unmount)
}

// mountAction mounts or unmounts synchronously (both are quick) and answers
// with the datastore as it is now.
func (s *Server) mountAction(w http.ResponseWriter, r *http.Request, what string, do func(string) error) {
	name, ok := datastoreName(w, r)
	if !ok {
		return
	}
	if err := do(name); err != nil {
		s.datastoreError(w, r, err)
		return
	}
	s.log.Info("datastore "+what+"ed", "name", name, "remote", r.RemoteAddr)
	d, err := s.ds.Get(name)
	if err != nil {
		s.datastoreError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}
