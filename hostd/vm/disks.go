package vm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/hostd/vmconfig"
)

// Disk operations on datastore files, outside any VM (vmkfstools -i and -X
// on ESXi): import other formats, clone, grow, inspect.

// Errors of the disk operations, for the API's codes.
var (
	ErrNoFile     = errors.New("no such file")
	ErrFileExists = errors.New("file already exists")
	ErrShrink     = errors.New("disks can only grow")
)

// ImportFormats are the source formats Import converts; Clone copies
// CloneFormats, the formats VMs run from.
var (
	ImportFormats = []string{api.DiskQcow2, api.DiskRaw, "vmdk", "vhdx", "vdi", "vpc"}
	CloneFormats  = []string{api.DiskQcow2, api.DiskRaw}
)

// ImageInfo is one image of `qemu-img info --output=json --backing-chain`.
type ImageInfo struct {
	Filename            string `json:"filename"`
	Format              string `json:"format"`
	VirtualSize         int64  `json:"virtual-size"`
	ActualSize          int64  `json:"actual-size"`
	BackingFilename     string `json:"backing-filename"`
	FullBackingFilename string `json:"full-backing-filename"`
	Snapshots           []struct {
		Name string `json:"name"`
	} `json:"snapshots"`
	// FormatSpecific holds what a format adds (vmdk extents, qcow2's
	// data-file).
	FormatSpecific json.RawMessage `json:"format-specific"`
}

// files lists the host files the image reads: itself, its backing file,
// vmdk extents and an external qcow2 data file.
func (i ImageInfo) files() []string {
	out := []string{i.Filename}
	if i.FullBackingFilename != "" {
		out = append(out, i.FullBackingFilename)
	} else if i.BackingFilename != "" {
		out = append(out, i.BackingFilename)
	}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && (k == "filename" || k == "data-file") {
					out = append(out, s)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	var fs any
	if json.Unmarshal(i.FormatSpecific, &fs) == nil {
		walk(fs)
	}
	return out
}

// ImageTool converts, resizes and inspects images (QEMUImg).
type ImageTool interface {
	// Convert writes src (in srcFormat) to dst as dstFormat: qcow2 thin,
	// raw fully allocated.
	Convert(ctx context.Context, src, srcFormat, dst, dstFormat string) error
	// Resize sets the virtual size; raw grows fully allocated.
	Resize(ctx context.Context, path, format string, sizeMiB int64) error
	// Info describes the image and its backing chain, the image first.
	Info(ctx context.Context, path string) ([]ImageInfo, error)
}

// Convert runs qemu-img convert with the source format named, so the
// source is never probed.
func (q QEMUImg) Convert(ctx context.Context, src, srcFormat, dst, dstFormat string) error {
	args := []string{"convert", "-q", "-f", srcFormat, "-O", dstFormat}
	if dstFormat == api.DiskRaw {
		args = append(args, "-o", "preallocation=falloc")
	}
	return q.run(ctx, append(args, src, dst)...)
}

// Resize runs qemu-img resize (never with --shrink).
func (q QEMUImg) Resize(ctx context.Context, path, format string, sizeMiB int64) error {
	args := []string{"resize", "-q", "-f", format}
	if format == api.DiskRaw {
		args = append(args, "--preallocation=falloc")
	}
	return q.run(ctx, append(args, path, strconv.FormatInt(sizeMiB, 10)+"M")...)
}

// Info runs qemu-img info on the whole backing chain. It shares the image
// (-U): reading metadata is safe while a VM uses it.
func (q QEMUImg) Info(ctx context.Context, path string) ([]ImageInfo, error) {
	out, err := q.output(ctx, "info", "--output=json", "--backing-chain", "-U", path)
	if err != nil {
		return nil, err
	}
	var chain []ImageInfo
	if err := json.Unmarshal(out, &chain); err != nil {
		return nil, fmt.Errorf("qemu-img info %s: %w", path, err)
	}
	if len(chain) == 0 {
		return nil, fmt.Errorf("qemu-img info %s: no image described", path)
	}
	return chain, nil
}

// DiskOps runs the disk operations on "[datastore] path" references. It
// needs no VM manager: InUse tells it which files belong to VMs that are
// not powered off.
type DiskOps struct {
	Tool ImageTool
	// Datastore maps a datastore name to its mounted directory.
	Datastore func(name string) (string, error)
	// InUse names the VM, not powered off, that uses path (its directory
	// or one of its disks); nil means no VM ever does.
	InUse func(path string) (vm string, busy bool)
}

// diskFile is a resolved reference.
type diskFile struct {
	ref, root, path string
}

// resolve turns "[datastore] path" into a host path inside the datastore.
func (d *DiskOps) resolve(ref string) (diskFile, error) {
	if err := vmconfig.CheckFileRef(ref); err != nil {
		return diskFile{}, fmt.Errorf("%w: %q: %w", ErrInvalid, ref, err)
	}
	ds, p, ok := vmconfig.SplitDatastorePath(ref)
	if !ok {
		return diskFile{}, fmt.Errorf(`%w: %q: want "[datastore] path"`, ErrInvalid, ref)
	}
	root, err := d.Datastore(ds)
	if err != nil {
		return diskFile{}, err
	}
	return diskFile{ref: ref, root: root, path: filepath.Join(root, filepath.Clean("/"+p))}, nil
}

// existing resolves ref and checks that it is a file no running VM uses.
func (d *DiskOps) existing(ref string) (diskFile, error) {
	f, err := d.resolve(ref)
	if err != nil {
		return f, err
	}
	st, err := os.Stat(f.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return f, fmt.Errorf("%w: %s", ErrNoFile, ref)
	case err != nil:
		return f, err
	case st.IsDir():
		return f, fmt.Errorf("%w: %s is a directory", ErrInvalid, ref)
	}
	if d.InUse != nil {
		if vm, busy := d.InUse(f.path); busy {
			return f, fmt.Errorf("%w: %s belongs to VM %s, which is not powered off; power it off first", ErrState, ref, vm)
		}
	}
	return f, nil
}

// inspect runs Info and checks the format. Before a copy (confine) it also
// checks that every file the image reads lies inside its datastore: a
// crafted vmdk extent or backing file could otherwise copy any host file
// or device into the datastore.
func (d *DiskOps) inspect(ctx context.Context, f diskFile, formats []string, op string, confine bool) ([]ImageInfo, error) {
	chain, err := d.Tool.Info(ctx, f.path)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(formats, chain[0].Format) {
		return nil, fmt.Errorf("%w: %s is %s; %s takes %s", ErrInvalid, f.ref, chain[0].Format, op, strings.Join(formats, ", "))
	}
	if !confine {
		return chain, nil
	}
	for _, img := range chain {
		for _, p := range img.files() {
			if !filepath.IsAbs(p) {
				p = filepath.Join(filepath.Dir(f.path), p)
			}
			if !within(filepath.Clean(p), f.root) {
				return nil, fmt.Errorf("%w: %s reads %s, outside its datastore", ErrInvalid, f.ref, p)
			}
		}
	}
	return chain, nil
}

// within reports whether p is dir or inside it.
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// Import converts an image of any ImportFormats (vmdk, vhdx, ...) to a new
// disk: qcow2 for thin provisioning, fully allocated raw for thick.
func (d *DiskOps) Import(ctx context.Context, src, dst, provisioning string) (api.DiskInfo, error) {
	return d.copy(ctx, "import", ImportFormats, src, dst, provisioning)
}

// Clone copies a qcow2 or raw disk to a new, independent disk (backing
// files flattened, internal snapshots left behind).
func (d *DiskOps) Clone(ctx context.Context, src, dst, provisioning string) (api.DiskInfo, error) {
	return d.copy(ctx, "clone", CloneFormats, src, dst, provisioning)
}

func (d *DiskOps) copy(ctx context.Context, op string, formats []string, src, dst, provisioning string) (api.DiskInfo, error) {
	format := map[string]string{api.ProvisionThin: api.DiskQcow2, api.ProvisionThick: api.DiskRaw}[provisioning]
	if format == "" {
		return api.DiskInfo{}, fmt.Errorf("%w: provisioning %q: want thin or thick", ErrInvalid, provisioning)
	}
	from, err := d.existing(src)
	if err != nil {
		return api.DiskInfo{}, err
	}
	to, err := d.resolve(dst)
	if err != nil {
		return api.DiskInfo{}, err
	}
	if to.path == to.root {
		return api.DiskInfo{}, fmt.Errorf("%w: %s names the datastore itself", ErrInvalid, dst)
	}
	if _, err := os.Lstat(to.path); err == nil {
		return api.DiskInfo{}, fmt.Errorf("%w: %s", ErrFileExists, dst)
	}
	chain, err := d.inspect(ctx, from, formats, op, true)
	if err != nil {
		return api.DiskInfo{}, err
	}
	if err := d.write(to.path, func(tmp string) error {
		return d.Tool.Convert(ctx, from.path, chain[0].Format, tmp, format)
	}); err != nil {
		return api.DiskInfo{}, fmt.Errorf("%s %s to %s: %w", op, src, dst, err)
	}
	return d.info(ctx, to)
}

// write makes dst through fill: into a hidden temporary file in dst's
// directory, renamed to dst (never over an existing file) only when fill
// succeeded. A failure leaves neither the file nor directories it made.
func (d *DiskOps) write(dst string, fill func(tmp string) error) (err error) {
	dir := filepath.Dir(dst)
	made, err := mkdirs(dir)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil && made != "" {
			os.RemoveAll(made)
		}
	}()
	f, err := os.CreateTemp(dir, "."+filepath.Base(dst)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	f.Close()
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if err := fill(tmp); err != nil {
		return err
	}
	return renameNoReplace(tmp, dst)
}

// mkdirs makes dir and its missing parents and returns the topmost one it
// made ("" when dir existed).
func mkdirs(dir string) (string, error) {
	top := ""
	for p := dir; ; p = filepath.Dir(p) {
		if _, err := os.Stat(p); err == nil || p == filepath.Dir(p) {
			break
		}
		top = p
	}
	if top == "" {
		return "", nil
	}
	return top, os.MkdirAll(dir, 0o755)
}

// renameNoReplace renames, refusing to replace an existing file. Where the
// file system lacks RENAME_NOREPLACE (NFS), it checks first.
func renameNoReplace(from, to string) error {
	err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EEXIST):
		return fmt.Errorf("%w: %s", ErrFileExists, to)
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EOPNOTSUPP):
		if _, err := os.Lstat(to); err == nil {
			return fmt.Errorf("%w: %s", ErrFileExists, to)
		}
		return os.Rename(from, to)
	}
	return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
}

// Grow enlarges a qcow2 or raw disk of no running VM to sizeMiB (raw stays
// fully allocated). Shrinking is refused; the same size changes nothing.
func (d *DiskOps) Grow(ctx context.Context, ref string, sizeMiB int64) (api.DiskInfo, error) {
	if sizeMiB < 1 || sizeMiB > vmconfig.MaxDiskSizeMiB {
		return api.DiskInfo{}, fmt.Errorf("%w: size %d MiB: want 1-%d", ErrInvalid, sizeMiB, int64(vmconfig.MaxDiskSizeMiB))
	}
	f, err := d.existing(ref)
	if err != nil {
		return api.DiskInfo{}, err
	}
	chain, err := d.inspect(ctx, f, CloneFormats, "grow", false)
	if err != nil {
		return api.DiskInfo{}, err
	}
	cur := chain[0].VirtualSize
	switch want := sizeMiB << 20; {
	case want < cur:
		return api.DiskInfo{}, fmt.Errorf("%w: %s is %d MiB, more than the %d MiB asked", ErrShrink, ref, cur>>20, sizeMiB)
	case want == cur:
		return d.info(ctx, f)
	}
	if err := d.Tool.Resize(ctx, f.path, chain[0].Format, sizeMiB); err != nil {
		return api.DiskInfo{}, fmt.Errorf("grow %s: %w", ref, err)
	}
	return d.info(ctx, f)
}

// Info describes a disk (a VM may be using it).
func (d *DiskOps) Info(ctx context.Context, ref string) (api.DiskInfo, error) {
	f, err := d.resolve(ref)
	if err != nil {
		return api.DiskInfo{}, err
	}
	st, err := os.Stat(f.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return api.DiskInfo{}, fmt.Errorf("%w: %s", ErrNoFile, ref)
	case err != nil:
		return api.DiskInfo{}, err
	case st.IsDir():
		return api.DiskInfo{}, fmt.Errorf("%w: %s is a directory", ErrInvalid, ref)
	}
	return d.info(ctx, f)
}

func (d *DiskOps) info(ctx context.Context, f diskFile) (api.DiskInfo, error) {
	chain, err := d.Tool.Info(ctx, f.path)
	if err != nil {
		return api.DiskInfo{}, err
	}
	img := chain[0]
	out := api.DiskInfo{
		Path: f.ref, Format: img.Format,
		VirtualSizeBytes: img.VirtualSize, ActualSizeBytes: img.ActualSize,
		Snapshots: len(img.Snapshots),
	}
	if b := img.FullBackingFilename; b != "" {
		out.BackingFile = b
		if ds, _, ok := vmconfig.SplitDatastorePath(f.ref); ok && within(b, f.root) {
			rel, _ := filepath.Rel(f.root, b)
			out.BackingFile = "[" + ds + "] " + rel
		}
	} else {
		out.BackingFile = img.BackingFilename
	}
	return out, nil
}

// UsingVM names the VM in vms, not powered off, whose directory holds path
// or which has path as a disk. datastore resolves the VMs' datastores.
func UsingVM(vms []api.VM, datastore func(string) (string, error), path string) (string, bool) {
	path = filepath.Clean(path)
	for _, v := range vms {
		if v.Status.State == api.VMPoweredOff {
			continue
		}
		root, err := datastore(v.Datastore)
		if err != nil {
			continue
		}
		dir := filepath.Join(root, filepath.Dir(filepath.Clean("/"+v.Path)))
		if within(path, dir) {
			return v.Spec.Name, true
		}
		for _, disk := range v.Spec.Disks {
			if p, err := resolveRef(datastore, dir, disk.File); err == nil && p == path {
				return v.Spec.Name, true
			}
		}
	}
	return "", false
}

// resolveRef turns a spec file reference ("[datastore] path", or a path
// relative to the VM directory dir) into a host path.
func resolveRef(datastore func(string) (string, error), dir, ref string) (string, error) {
	if ds, p, ok := vmconfig.SplitDatastorePath(ref); ok {
		root, err := datastore(ds)
		if err != nil {
			return "", err
		}
		return filepath.Join(root, filepath.Clean("/"+p)), nil
	}
	return filepath.Join(dir, filepath.Clean("/"+ref)), nil
}
