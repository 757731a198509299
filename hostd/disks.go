package hostd

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/datastore"
	"github.com/flashvisor/flashvisor/hostd/vm"
	"github.com/flashvisor/flashvisor/hostd/vmconfig"
)

// Disks is what the API needs for disk operations on datastore files
// (*vm.DiskOps). Files are "[datastore] path".
type Disks interface {
	Import(ctx context.Context, src, dst, provisioning string) (api.DiskInfo, error)
	Clone(ctx context.Context, src, dst, provisioning string) (api.DiskInfo, error)
	Grow(ctx context.Context, disk string, sizeMiB int64) (api.DiskInfo, error)
	Info(ctx context.Context, disk string) (api.DiskInfo, error)
}

// OpenDisks builds the disk operations. datastore maps a datastore name to
// its mount point (mounted ones only); inUse names the VM, not powered off,
// whose directory or disk a host path is.
type OpenDisks func(datastore func(name string) (string, error), inUse func(path string) (vm string, busy bool)) Disks

// Task kinds of the disk operations.
const (
	TaskDiskImport = "disk.import"
	TaskDiskClone  = "disk.clone"
	TaskDiskGrow   = "disk.grow"
)

func (s *Server) diskRoutes(v string) []route {
	p := v + "/disks"
	return []route{
		{"GET", p + "/info", s.withDisks(s.diskInfo)},
		{"POST", p + "/import", s.withDisks(s.copyDisk(TaskDiskImport))},
		{"POST", p + "/clone", s.withDisks(s.copyDisk(TaskDiskClone))},
		{"POST", p + "/grow", s.withDisks(s.growDisk)},
	}
}

// openDisks builds the disk operations once the datastores are known.
func (s *Server) openDisks() {
	if s.o.OpenDisks == nil || s.ds == nil {
		return
	}
	s.disks = s.o.OpenDisks(s.datastoreRoot, s.diskUser)
}

// datastoreRoot is the mount point of a mounted datastore.
func (s *Server) datastoreRoot(name string) (string, error) {
	d, err := s.ds.Get(name)
	if err != nil {
		return "", err
	}
	if d.Status != api.DatastoreMounted || d.MountPoint == "" {
		return "", fmt.Errorf("%w: datastore %s is %s", vm.ErrState, name, d.Status)
	}
	return d.MountPoint, nil
}

// diskUser names the VM, not powered off, that uses a host path. Without a
// VM manager no VM is known (QEMU's image locks still protect disks of VMs
// that outlived hostd).
func (s *Server) diskUser(path string) (string, bool) {
	if s.vms == nil {
		return "", false
	}
	return vm.UsingVM(s.vms.List(), s.datastoreRoot, path)
}

func (s *Server) withDisks(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.disks == nil {
			writeError(w, http.StatusServiceUnavailable, api.ErrUnavailable, "disk operations are unavailable: hostd runs without datastores (see hostd's log)")
			return
		}
		h(w, r)
	}
}

// classifyDisk gives disk failures their API codes; the rest are the VM
// manager's.
func classifyDisk(err error) *vmError {
	var ve *vmError
	if errors.As(err, &ve) {
		return ve
	}
	e := &vmError{err: err}
	switch {
	case errors.Is(err, vm.ErrNoFile), errors.Is(err, datastore.ErrNotFound):
		e.status, e.code = http.StatusNotFound, api.ErrNotFound
	case errors.Is(err, vm.ErrFileExists):
		e.status, e.code = http.StatusConflict, api.ErrExists
	case errors.Is(err, vm.ErrShrink):
		e.status, e.code = http.StatusBadRequest, api.ErrBadRequest
	default:
		return classifyVM(err)
	}
	return e
}

// diskTask runs a disk operation as a task and answers 202 with it.
func (s *Server) diskTask(w http.ResponseWriter, kind, target string, fn func(ctx context.Context) (api.DiskInfo, error)) {
	t := s.tasks.Start(kind, target, func(ctx context.Context) (any, error) {
		res, err := fn(ctx)
		if err != nil {
			e := classifyDisk(err)
			if e.status == http.StatusInternalServerError {
				s.log.Error("disk operation failed", "kind", kind, "target", target, "err", err)
			}
			return nil, e
		}
		return res, nil
	})
	writeJSON(w, http.StatusAccepted, t)
}

// checkDiskRef accepts "[datastore] path" with a valid datastore name and a
// clean relative path.
func checkDiskRef(field, ref string) error {
	if ref == "" {
		return fmt.Errorf("%s is required", field)
	}
	if len(ref) > vmconfig.MaxPathLen || strings.ContainsFunc(ref, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fmt.Errorf("%s: at most %d characters, no control characters", field, vmconfig.MaxPathLen)
	}
	ds, _, ok := vmconfig.SplitDatastorePath(ref)
	if !ok {
		return fmt.Errorf(`%s %q: want "[datastore] path"`, field, ref)
	}
	if err := datastore.ValidName(ds); err != nil {
		return fmt.Errorf("%s %q: %w", field, ref, err)
	}
	if err := vmconfig.CheckFileRef(ref); err != nil {
		return fmt.Errorf("%s %q: %w", field, ref, err)
	}
	return nil
}

// copyDisk serves import and clone: the same body, qemu-img convert.
func (s *Server) copyDisk(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req api.DiskCopyRequest
		if !decodeBody(w, r, &req) {
			return
		}
		if req.Provisioning == "" {
			req.Provisioning = api.ProvisionThin
		}
		err := errors.Join(checkDiskRef("source", req.Source), checkDiskRef("destination", req.Destination))
		if err == nil && req.Provisioning != api.ProvisionThin && req.Provisioning != api.ProvisionThick {
			err = fmt.Errorf("provisioning %q: want thin or thick", req.Provisioning)
		}
		if err == nil && req.Source == req.Destination {
			err = errors.New("source and destination are the same file")
		}
		if err != nil {
			writeError(w, http.StatusBadRequest, api.ErrBadRequest, err.Error())
			return
		}
		op := s.disks.Import
		if kind == TaskDiskClone {
			op = s.disks.Clone
		}
		s.log.Info("disk operation", "kind", kind, "source", req.Source, "destination", req.Destination, "provisioning", req.Provisioning, "remote", r.RemoteAddr)
		s.diskTask(w, kind, req.Destination, func(ctx context.Context) (api.DiskInfo, error) {
			return op(ctx, req.Source, req.Destination, req.Provisioning)
		})
	}
}

func (s *Server) growDisk(w http.ResponseWriter, r *http.Request) {
	var req api.DiskGrowRequest
	if !decodeBody(w, r, &req) {
		return
	}
	err := checkDiskRef("disk", req.Disk)
	if err == nil && (req.SizeMiB < 1 || req.SizeMiB > vmconfig.MaxDiskSizeMiB) {
		err = fmt.Errorf("size_mib %d: want 1-%d", req.SizeMiB, int64(vmconfig.MaxDiskSizeMiB))
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, api.ErrBadRequest, err.Error())
		return
	}
	s.log.Info("disk operation", "kind", TaskDiskGrow, "disk", req.Disk, "size_mib", req.SizeMiB, "remote", r.RemoteAddr)
	s.diskTask(w, TaskDiskGrow, req.Disk, func(ctx context.Context) (api.DiskInfo, error) {
		return s.disks.Grow(ctx, req.Disk, req.SizeMiB)
	})
}

func (s *Server) diskInfo(w http.ResponseWriter, r *http.Request) {
	ref := r.URL.Query().Get("path")
	if err := checkDiskRef("query path", ref); err != nil {
		writeError(w, http.StatusBadRequest, api.ErrBadRequest, err.Error())
		return
	}
	info, err := s.disks.Info(r.Context(), ref)
	if err != nil {
		e := classifyDisk(err)
		if e.status == http.StatusInternalServerError {
			s.log.Error("disk info failed", "path", ref, "err", err)
		}
		writeError(w, e.status, e.code, e.Error())
		return
	}
	writeJSON(w, http.StatusOK, info)
}
