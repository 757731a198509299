package datastore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/internal/atomicfile"
)

// Sentinel errors; the API maps them to stable codes.
var (
	ErrNotFound       = errors.New("no such datastore")
	ErrExists         = errors.New("datastore name already in use")
	ErrInvalidName    = errors.New("invalid datastore name")
	ErrNoDevice       = errors.New("no such disk or partition")
	ErrStatePartition = errors.New("device holds the host's state partition")
	ErrMounted        = errors.New("device is mounted")
	ErrHasDatastore   = errors.New("device holds a datastore")
	ErrNotBlank       = errors.New("device is not blank")
	ErrNotEmpty       = errors.New("datastore holds VM directories")
	ErrMissing        = errors.New("datastore's disk is missing")
	ErrConflict       = errors.New("datastore conflict")
	ErrCorruptState   = errors.New("datastore state file is corrupt")
)

// StateLabel is the ext4 label of the host's state partition, which is never
// formatted, even when forced (same value as internal/layout.StateLabel).
const StateLabel = "FVSTATE"

// Formatter makes filesystems. The real one runs mke2fs (Mke2fs).
type Formatter interface {
	// MakeExt4 formats device with an ext4 filesystem with the given
	// label (at most 16 bytes) and filesystem UUID.
	MakeExt4(ctx context.Context, device, label, uuid string) error
}

// Mounter mounts ext4 filesystems. The real one is SysMounter.
type Mounter interface {
	Mount(device, target string, readOnly bool) error
	Unmount(target string) error
}

// StatfsFunc returns a mounted filesystem's size and the bytes available.
type StatfsFunc func(path string) (total, free uint64, err error)

// Config holds a Manager's paths and OS seams. Every field is required
// except SCSIHostDir, Now, NewUUID and Log.
type Config struct {
	SysBlock   string // /sys/block
	DevDir     string // /dev
	Mountinfo  string // /proc/self/mountinfo
	VolumesDir string // /vmfs/volumes
	StateFile  string // /var/lib/flashvisor/datastores.json
	// ProbeDir is where unknown ext4 filesystems are mounted read-only for a
	// moment to look for a descriptor (/run/flashvisor/dsprobe).
	ProbeDir string
	// SCSIHostDir (/sys/class/scsi_host) is where Rescan asks SCSI hosts
	// to scan their buses; "" skips that.
	SCSIHostDir string

	Formatter Formatter
	Mounter   Mounter
	Statfs    StatfsFunc
	Now       func() time.Time // default time.Now
	NewUUID   func() string    // default random version 4 UUID
	Log       *slog.Logger     // default discard
}

// Manager keeps the host's local datastores: desired state is the state
// file (known datastores and whether the operator unmounted them), applied
// state is the mount table and the links in VolumesDir. It is safe for
// concurrent use.
type Manager struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	known    []stateEntry
	problems []api.Datastore // found by the last MountAll but not mounted
}

// New loads the state file. A corrupt state file is an error wrapping
// ErrCorruptState, and the file is left untouched.
func New(cfg Config) (*Manager, error) {
	for name, v := range map[string]string{"SysBlock": cfg.SysBlock, "DevDir": cfg.DevDir, "Mountinfo": cfg.Mountinfo, "VolumesDir": cfg.VolumesDir, "StateFile": cfg.StateFile, "ProbeDir": cfg.ProbeDir} {
		if v == "" {
			return nil, fmt.Errorf("datastore: Config.%s is empty", name)
		}
	}
	if cfg.Formatter == nil || cfg.Mounter == nil || cfg.Statfs == nil {
		return nil, errors.New("datastore: Config needs a Formatter, a Mounter and Statfs")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.NewUUID == nil {
		cfg.NewUUID = newUUID
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	known, err := loadState(cfg.StateFile)
	if err != nil {
		return nil, err
	}
	return &Manager{cfg: cfg, log: log, known: known}, nil
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return formatUUID(b[:])
}

func (m *Manager) mountPoint(uuid string) string { return filepath.Join(m.cfg.VolumesDir, uuid) }
func (m *Manager) linkPath(name string) string   { return filepath.Join(m.cfg.VolumesDir, name) }

func (m *Manager) byName(name string) (int, bool) {
	for i, e := range m.known {
		if e.Name == name {
			return i, true
		}
	}
	return -1, false
}

func (m *Manager) byUUID(uuid string) (int, bool) {
	for i, e := range m.known {
		if e.UUID == uuid {
			return i, true
		}
	}
	return -1, false
}

// volumes flattens disks and partitions.
func volumes(disks []api.Disk) []api.BlockDevice {
	var out []api.BlockDevice
	for _, d := range disks {
		out = append(out, d.BlockDevice)
		out = append(out, d.Partitions...)
	}
	return out
}

// findByUUID returns the ext4 volumes whose filesystem UUID is uuid.
func findByUUID(vols []api.BlockDevice, uuid string) []api.BlockDevice {
	var out []api.BlockDevice
	for _, v := range vols {
		if v.Content == api.ContentExt4 && v.FSUUID == uuid {
			out = append(out, v)
		}
	}
	return out
}

func (m *Manager) listDisks() ([]api.Disk, error) {
	return ListDisks(m.cfg.SysBlock, m.cfg.DevDir, m.cfg.Mountinfo)
}

// Disks lists the host's disks, naming the datastores they hold.
func (m *Manager) Disks() ([]api.Disk, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	disks, err := m.listDisks()
	if err != nil {
		return nil, err
	}
	for i := range disks {
		m.annotate(&disks[i].BlockDevice)
		for j := range disks[i].Partitions {
			m.annotate(&disks[i].Partitions[j])
		}
	}
	return disks, nil
}

func (m *Manager) annotate(b *api.BlockDevice) {
	if b.Content != api.ContentExt4 {
		return
	}
	if i, ok := m.byUUID(b.FSUUID); ok {
		b.Datastore = m.known[i].Name
		return
	}
	if mountedAt(*b, m.mountPoint(b.FSUUID)) {
		b.Datastore = "(unknown)"
	}
}

// List reports every known datastore (mounted, unmounted or missing) and the
// datastores the last MountAll found but could not mount (conflict, error).
func (m *Manager) List() ([]api.Datastore, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	disks, err := m.listDisks()
	if err != nil {
		return nil, err
	}
	vols := volumes(disks)
	var out []api.Datastore
	for _, e := range m.known {
		out = append(out, m.info(e, vols))
	}
	for _, p := range m.problems {
		if i, ok := m.byUUID(p.UUID); ok && m.known[i].Name == p.Name {
			// A known datastore that failed: report it in its own row.
			for j := range out {
				if out[j].UUID == p.UUID && out[j].Status != api.DatastoreMounted {
					out[j].Status, out[j].Message = p.Status, p.Message
				}
			}
			continue
		}
		out = append(out, p)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Get returns one known datastore by name.
func (m *Manager) Get(name string) (api.Datastore, error) {
	list, err := m.List()
	if err != nil {
		return api.Datastore{}, err
	}
	for _, d := range list {
		if d.Name == name && d.Status != api.DatastoreConflict {
			return d, nil
		}
	}
	return api.Datastore{}, fmt.Errorf("%w: %s", ErrNotFound, name)
}

func (m *Manager) info(e stateEntry, vols []api.BlockDevice) api.Datastore {
	d := api.Datastore{
		Name:       e.Name,
		UUID:       e.UUID,
		Kind:       e.Kind,
		MountPoint: m.mountPoint(e.UUID),
		Path:       m.linkPath(e.Name),
		Created:    e.Created,
		Status:     api.DatastoreMissing,
	}
	found := findByUUID(vols, e.UUID)
	for _, v := range found {
		if mountedAt(v, d.MountPoint) {
			d.Device, d.Status = v.Path, api.DatastoreMounted
			total, free, err := m.cfg.Statfs(d.MountPoint)
			if err != nil {
				d.Message = fmt.Sprintf("statfs: %v", err)
			}
			d.CapacityBytes, d.FreeBytes = total, free
			return d
		}
	}
	switch {
	case len(found) == 1:
		d.Device, d.Status = found[0].Path, api.DatastoreUnmounted
	case len(found) > 1:
		d.Status = api.DatastoreConflict
		d.Message = "several disks carry this UUID: " + devicePaths(found)
	default:
		d.Message = "disk not found"
		if e.Device != "" {
			d.Message += " (last seen as " + e.Device + ")"
		}
	}
	return d
}

func devicePaths(vols []api.BlockDevice) string {
	var p []string
	for _, v := range vols {
		p = append(p, v.Path)
	}
	return strings.Join(p, ", ")
}

// findDevice resolves "sdb", "/dev/sdb" or a partition name.
func findDevice(disks []api.Disk, devDir, dev string) (api.BlockDevice, *api.Disk, bool) {
	name := strings.TrimPrefix(dev, devDir+"/")
	for i := range disks {
		d := &disks[i]
		if d.Name == name || d.Path == dev {
			return d.BlockDevice, d, true
		}
		for _, p := range d.Partitions {
			if p.Name == name || p.Path == dev {
				return p, nil, true
			}
		}
	}
	return api.BlockDevice{}, nil, false
}

// Create formats a disk or partition as a new datastore, mounts it at
// VolumesDir/<uuid>, writes its descriptor and links VolumesDir/<name>.
//
// It refuses the state partition (or a disk holding it) and any mounted
// device, always; and a device that holds a datastore, a filesystem, a
// partition table or any data unless req.Force.
func (m *Manager) Create(ctx context.Context, req api.DatastoreCreateRequest) (api.Datastore, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	fail := func(err error) (api.Datastore, error) {
		return api.Datastore{}, fmt.Errorf("create datastore %s on %s: %w", req.Name, req.Device, err)
	}
	if err := ValidName(req.Name); err != nil {
		return fail(err)
	}
	if _, ok := m.byName(req.Name); ok {
		return fail(ErrExists)
	}
	if _, err := os.Lstat(m.linkPath(req.Name)); err == nil {
		return fail(fmt.Errorf("%w: %s exists", ErrExists, m.linkPath(req.Name)))
	}
	disks, err := m.listDisks()
	if err != nil {
		return fail(err)
	}
	dev, disk, ok := findDevice(disks, m.cfg.DevDir, req.Device)
	if !ok {
		return fail(ErrNoDevice)
	}
	parts := []api.BlockDevice{dev}
	if disk != nil {
		parts = append(parts, disk.Partitions...)
	}
	var replaced []string // known datastores the format destroys
	for _, p := range parts {
		if p.Content == api.ContentExt4 && p.Label == StateLabel {
			return fail(fmt.Errorf("%w (%s)", ErrStatePartition, p.Path))
		}
		if len(p.MountPoints) > 0 {
			return fail(fmt.Errorf("%w: %s on %s; unmount it first", ErrMounted, p.Path, strings.Join(p.MountPoints, ", ")))
		}
		if p.Content == api.ContentExt4 {
			if i, ok := m.byUUID(p.FSUUID); ok {
				replaced = append(replaced, m.known[i].UUID)
				if !req.Force {
					return fail(fmt.Errorf("%w: %s holds datastore %s", ErrHasDatastore, p.Path, m.known[i].Name))
				}
			}
		}
	}
	if dev.ReadOnly {
		return fail(fmt.Errorf("%s is read-only", dev.Path))
	}
	if !req.Force {
		if dev.Content != api.ContentEmpty {
			return fail(fmt.Errorf("%w: %s holds %s (force to format anyway)", ErrNotBlank, dev.Path, describe(dev)))
		}
		if disk != nil && len(disk.Partitions) > 0 {
			return fail(fmt.Errorf("%w: %s has partitions (force to format anyway)", ErrNotBlank, dev.Path))
		}
	}
	const minSize = 64 << 20
	if dev.SizeBytes < minSize {
		return fail(fmt.Errorf("%s is %d bytes; a datastore needs at least %d", dev.Path, dev.SizeBytes, minSize))
	}

	uuid := m.cfg.NewUUID()
	label := req.Name
	if len(label) > 16 {
		label = label[:16]
	}
	m.log.Info("formatting datastore", "name", req.Name, "device", dev.Path, "uuid", uuid, "forced", req.Force)
	if err := m.cfg.Formatter.MakeExt4(ctx, dev.Path, label, uuid); err != nil {
		return fail(err)
	}
	for _, u := range replaced {
		i, _ := m.byUUID(u)
		m.log.Warn("datastore overwritten by a forced create", "name", m.known[i].Name, "uuid", u)
		m.forget(i)
	}
	e := stateEntry{Name: req.Name, UUID: uuid, Kind: api.DatastoreLocal, Device: dev.Path, Created: m.cfg.Now().UTC().Truncate(time.Second)}
	mp := m.mountPoint(uuid)
	if err := m.mount(dev.Path, mp); err != nil {
		return fail(err)
	}
	desc := Descriptor{Version: descriptorVersion, Name: e.Name, UUID: uuid, Kind: e.Kind, Created: e.Created}
	if err := atomicfile.WriteFile(filepath.Join(mp, DescriptorFile), desc.Marshal(), 0o644); err != nil {
		m.unmount(mp)
		return fail(err)
	}
	if err := m.link(e.Name, uuid); err != nil {
		m.unmount(mp)
		return fail(err)
	}
	m.known = append(m.known, e)
	if err := saveState(m.cfg.StateFile, m.known); err != nil {
		return fail(err)
	}
	disks, _ = m.listDisks()
	return m.info(e, volumes(disks)), nil
}

func describe(b api.BlockDevice) string {
	s := b.ContentDetail
	if s == "" {
		s = b.Content
	}
	if b.Label != "" {
		s += fmt.Sprintf(" labelled %q", b.Label)
	}
	return s
}

// mount creates the mount point and mounts dev read-write on it.
func (m *Manager) mount(dev, mp string) error {
	if err := os.MkdirAll(mp, 0o755); err != nil {
		return err
	}
	if err := m.cfg.Mounter.Mount(dev, mp, false); err != nil {
		os.Remove(mp)
		return fmt.Errorf("mount %s on %s: %w", dev, mp, err)
	}
	return nil
}

// unmount unmounts and removes the (then empty) mount point.
func (m *Manager) unmount(mp string) error {
	if err := m.cfg.Mounter.Unmount(mp); err != nil {
		return fmt.Errorf("unmount %s: %w", mp, err)
	}
	os.Remove(mp) // only succeeds when empty: never removes data
	return nil
}

// link points VolumesDir/name at the uuid directory, replacing a stale link.
func (m *Manager) link(name, uuid string) error {
	p := m.linkPath(name)
	if fi, err := os.Lstat(p); err == nil {
		if fi.Mode()&os.ModeSymlink == 0 {
			return fmt.Errorf("%w: %s exists and is not a link", ErrConflict, p)
		}
		if t, _ := os.Readlink(p); t == uuid {
			return nil
		}
		if err := os.Remove(p); err != nil {
			return err
		}
	}
	return os.Symlink(uuid, p)
}

// unlink removes VolumesDir/name if it is a link to uuid.
func (m *Manager) unlink(name, uuid string) {
	p := m.linkPath(name)
	if t, err := os.Readlink(p); err == nil && t == uuid {
		os.Remove(p)
	}
}

func (m *Manager) forget(i int) {
	m.known = append(m.known[:i:i], m.known[i+1:]...)
}

// readDescriptor reads the descriptor of a mounted filesystem.
func readDescriptor(mp string) (Descriptor, error) {
	b, err := os.ReadFile(filepath.Join(mp, DescriptorFile))
	if err != nil {
		return Descriptor{}, err
	}
	return ParseDescriptor(b)
}

// found is an ext4 filesystem with a valid descriptor.
type found struct {
	vol     api.BlockDevice
	desc    Descriptor
	mounted bool // already at its mount point
}

// MountAll brings the applied state to the desired one: every ext4
// filesystem carrying a datastore descriptor is mounted at
// VolumesDir/<uuid> and linked by name, except those the operator
// unmounted. Unknown datastores (a disk moved from another host) are
// adopted. Two filesystems with the same UUID or name are reported as
// conflicts and neither is mounted (a datastore already mounted keeps its
// place). Known datastores whose disk is gone are reported as missing by
// List and lose their name link, so nothing is written to the root
// filesystem in their place. It is idempotent (hostd restarts, Rescan).
// The returned error joins the per-datastore problems; everything else was
// mounted.
func (m *Manager) MountAll(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	disks, err := m.listDisks()
	if err != nil {
		return err
	}
	m.problems = nil
	var cands []found
	for _, v := range volumes(disks) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if v.Content != api.ContentExt4 || v.Label == StateLabel || v.FSUUID == "" {
			continue
		}
		mp := m.mountPoint(v.FSUUID)
		if mountedAt(v, mp) {
			d, err := readDescriptor(mp)
			if err != nil {
				m.problem(v, "", api.DatastoreError, fmt.Sprintf("mounted at %s without a valid descriptor: %v", mp, err))
				continue
			}
			cands = append(cands, found{vol: v, desc: d, mounted: true})
			continue
		}
		if len(v.MountPoints) > 0 {
			continue // someone else's filesystem
		}
		if i, ok := m.byUUID(v.FSUUID); ok && m.known[i].Unmounted {
			continue
		}
		d, err := m.probeDescriptor(v)
		if err != nil {
			m.log.Debug("ext4 filesystem is not a datastore", "device", v.Path, "err", err)
			continue
		}
		if d.UUID != v.FSUUID {
			m.problem(v, d.Name, api.DatastoreConflict, fmt.Sprintf("descriptor UUID %s differs from the filesystem's %s (a copied disk?)", d.UUID, v.FSUUID))
			continue
		}
		cands = append(cands, found{vol: v, desc: d})
	}

	// Same UUID on two disks: a cloned disk. Do not guess which is real.
	byUUID := map[string][]found{}
	for _, c := range cands {
		byUUID[c.desc.UUID] = append(byUUID[c.desc.UUID], c)
	}
	var keep []found
	for _, group := range byUUID {
		if len(group) == 1 {
			keep = append(keep, group[0])
			continue
		}
		for _, c := range group {
			if c.mounted {
				keep = append(keep, c)
				continue
			}
			m.problem(c.vol, c.desc.Name, api.DatastoreConflict, fmt.Sprintf("datastore %s (uuid %s) is on several disks: %s", c.desc.Name, c.desc.UUID, devicePaths(vols(group))))
		}
	}
	// Same name: a known datastore keeps its name; among newcomers, nobody
	// gets it.
	byName := map[string][]found{}
	for _, c := range keep {
		byName[c.desc.Name] = append(byName[c.desc.Name], c)
	}
	var winners []found
	for name, group := range byName {
		owner := ""
		if i, ok := m.byName(name); ok {
			owner = m.known[i].UUID
		}
		for _, c := range group {
			switch {
			case c.desc.UUID == owner || owner == "" && len(group) == 1:
				winners = append(winners, c)
			case owner != "":
				m.problem(c.vol, c.desc.Name, api.DatastoreConflict, fmt.Sprintf("name %s is taken by datastore %s", name, owner))
			default:
				m.problem(c.vol, c.desc.Name, api.DatastoreConflict, fmt.Sprintf("several datastores are named %s: %s", name, devicePaths(vols(group))))
			}
		}
	}
	sort.Slice(winners, func(i, j int) bool { return winners[i].desc.Name < winners[j].desc.Name })

	var errs []error
	seen := map[string]bool{}
	for _, c := range winners {
		d := c.desc
		seen[d.UUID] = true
		if i, ok := m.byUUID(d.UUID); ok {
			if m.known[i].Name != d.Name {
				// The descriptor travels with the disk: it wins.
				m.unlink(m.known[i].Name, d.UUID)
			}
			m.known[i].Name, m.known[i].Device = d.Name, c.vol.Path
		} else {
			if i, ok := m.byName(d.Name); ok { // cannot happen: name grouping
				errs = append(errs, fmt.Errorf("%w: name %s", ErrConflict, m.known[i].Name))
				continue
			}
			m.log.Info("adopting datastore found on disk", "name", d.Name, "uuid", d.UUID, "device", c.vol.Path)
			m.known = append(m.known, stateEntry{Name: d.Name, UUID: d.UUID, Kind: d.Kind, Device: c.vol.Path, Created: d.Created})
		}
		mp := m.mountPoint(d.UUID)
		if !c.mounted {
			if err := m.mount(c.vol.Path, mp); err != nil {
				m.problem(c.vol, c.desc.Name, api.DatastoreError, err.Error())
				continue
			}
			m.log.Info("mounted datastore", "name", d.Name, "uuid", d.UUID, "device", c.vol.Path, "at", mp)
		}
		if err := m.link(d.Name, d.UUID); err != nil {
			m.problem(c.vol, c.desc.Name, api.DatastoreError, err.Error())
		}
	}
	for _, e := range m.known {
		if seen[e.UUID] {
			continue
		}
		// Missing or unmounted: its name must not lead to an empty
		// directory on the root filesystem.
		m.unlink(e.Name, e.UUID)
		if !e.Unmounted && len(findByUUID(volumes(disks), e.UUID)) == 0 {
			os.Remove(m.mountPoint(e.UUID))
			m.log.Warn("datastore missing: disk not found", "name", e.Name, "uuid", e.UUID, "last_device", e.Device)
		}
	}
	for _, p := range m.problems {
		if p.Status == api.DatastoreConflict {
			errs = append(errs, fmt.Errorf("%w: datastore %s on %s: %s", ErrConflict, p.Name, p.Device, p.Message))
		} else {
			errs = append(errs, fmt.Errorf("datastore %s on %s: %s", p.Name, p.Device, p.Message))
		}
	}
	if err := saveState(m.cfg.StateFile, m.known); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func vols(fs []found) []api.BlockDevice {
	var out []api.BlockDevice
	for _, f := range fs {
		out = append(out, f.vol)
	}
	return out
}

func (m *Manager) problem(v api.BlockDevice, name, status, msg string) {
	if name == "" {
		name = v.Label
	}
	d := api.Datastore{Name: name, UUID: v.FSUUID, Kind: api.DatastoreLocal, Device: v.Path, Status: status, Message: msg}
	m.log.Warn("datastore not mounted", "name", name, "device", v.Path, "uuid", v.FSUUID, "status", status, "reason", msg)
	m.problems = append(m.problems, d)
}

// probeDescriptor mounts an unmounted ext4 filesystem read-only (without
// replaying its journal) under ProbeDir, reads the descriptor and unmounts.
func (m *Manager) probeDescriptor(v api.BlockDevice) (Descriptor, error) {
	dir := filepath.Join(m.cfg.ProbeDir, v.FSUUID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Descriptor{}, err
	}
	defer os.Remove(dir)
	if err := m.cfg.Mounter.Mount(v.Path, dir, true); err != nil {
		return Descriptor{}, fmt.Errorf("probe mount %s: %w", v.Path, err)
	}
	d, err := readDescriptor(dir)
	if uerr := m.cfg.Mounter.Unmount(dir); uerr != nil {
		m.log.Error("probe unmount failed", "dir", dir, "err", uerr)
	}
	return d, err
}

// Mount mounts a known datastore again after Unmount.
func (m *Manager) Mount(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	i, ok := m.byName(name)
	if !ok {
		return fmt.Errorf("mount datastore %s: %w", name, ErrNotFound)
	}
	e := m.known[i]
	disks, err := m.listDisks()
	if err != nil {
		return err
	}
	fs := findByUUID(volumes(disks), e.UUID)
	switch {
	case len(fs) == 0:
		return fmt.Errorf("mount datastore %s: %w", name, ErrMissing)
	case len(fs) > 1:
		return fmt.Errorf("mount datastore %s: %w: on several disks: %s", name, ErrConflict, devicePaths(fs))
	}
	mp := m.mountPoint(e.UUID)
	if !mountedAt(fs[0], mp) {
		if err := m.mount(fs[0].Path, mp); err != nil {
			return fmt.Errorf("mount datastore %s: %w", name, err)
		}
	}
	if d, err := readDescriptor(mp); err != nil || d.UUID != e.UUID {
		m.unmount(mp)
		return fmt.Errorf("mount datastore %s: %s has no matching descriptor: %v", name, fs[0].Path, err)
	}
	if err := m.link(e.Name, e.UUID); err != nil {
		return fmt.Errorf("mount datastore %s: %w", name, err)
	}
	m.known[i].Unmounted, m.known[i].Device = false, fs[0].Path
	return saveState(m.cfg.StateFile, m.known)
}

// Unmount unmounts a datastore and removes its name link; it stays
// unmounted across reboots until Mount. The kernel refuses (EBUSY) while a
// VM has files open on it.
func (m *Manager) Unmount(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	i, ok := m.byName(name)
	if !ok {
		return fmt.Errorf("unmount datastore %s: %w", name, ErrNotFound)
	}
	e := m.known[i]
	mp := m.mountPoint(e.UUID)
	mounted, err := m.isMounted(mp)
	if err != nil {
		return err
	}
	if mounted {
		if err := m.unmount(mp); err != nil {
			return fmt.Errorf("unmount datastore %s: %w", name, err)
		}
	}
	m.unlink(e.Name, e.UUID)
	m.known[i].Unmounted = true
	return saveState(m.cfg.StateFile, m.known)
}

func (m *Manager) isMounted(target string) (bool, error) {
	mounts, err := readMountinfo(m.cfg.Mountinfo)
	if err != nil {
		return false, err
	}
	for _, mi := range mounts {
		if mi.target == target {
			return true, nil
		}
	}
	return false, nil
}

// Remove deletes a datastore: it refuses while VM directories exist unless
// force, unmounts it and wipes the filesystem signature so the disk is
// blank again. A missing datastore (disk gone) is only forgotten.
func (m *Manager) Remove(ctx context.Context, name string, force bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	fail := func(err error) error { return fmt.Errorf("remove datastore %s: %w", name, err) }
	i, ok := m.byName(name)
	if !ok {
		return fail(ErrNotFound)
	}
	e := m.known[i]
	disks, err := m.listDisks()
	if err != nil {
		return fail(err)
	}
	fs := findByUUID(volumes(disks), e.UUID)
	mp := m.mountPoint(e.UUID)
	switch {
	case len(fs) == 0:
		m.log.Warn("forgetting missing datastore", "name", name, "uuid", e.UUID)
		m.unlink(e.Name, e.UUID)
		os.Remove(mp)
		m.forget(i)
		return saveState(m.cfg.StateFile, m.known)
	case len(fs) > 1:
		return fail(fmt.Errorf("%w: on several disks: %s", ErrConflict, devicePaths(fs)))
	}
	v := fs[0]
	if !mountedAt(v, mp) {
		if err := m.mount(v.Path, mp); err != nil {
			return fail(err)
		}
	}
	vms, err := vmDirs(mp)
	if err != nil {
		return fail(err)
	}
	if len(vms) > 0 && !force {
		if e.Unmounted {
			m.unmount(mp)
		}
		return fail(fmt.Errorf("%w: %s (force to delete them)", ErrNotEmpty, strings.Join(vms, ", ")))
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	if err := m.unmount(mp); err != nil {
		return fail(err)
	}
	if err := wipe(v.Path); err != nil {
		return fail(err)
	}
	m.unlink(e.Name, e.UUID)
	m.forget(i)
	m.log.Info("removed datastore", "name", name, "uuid", e.UUID, "device", v.Path, "vm_dirs_deleted", len(vms))
	return saveState(m.cfg.StateFile, m.known)
}

// vmDirs lists the directories in a datastore's root that may be VMs:
// everything but hidden entries and lost+found.
func vmDirs(mp string) ([]string, error) {
	ents, err := os.ReadDir(mp)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") && e.Name() != "lost+found" {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// wipeSize is zeroed at each end of a device: the ext4 superblock, any
// partition table and GPT's backup live there.
const wipeSize = 1 << 20

// wipe zeroes both ends of dev and checks that no signature remains.
func wipe(dev string) error {
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("wipe: %w", err)
	}
	size, err := f.Seek(0, 2)
	if err != nil {
		f.Close()
		return fmt.Errorf("wipe %s: %w", dev, err)
	}
	zero := make([]byte, min(size, wipeSize))
	for _, off := range []int64{0, size - int64(len(zero))} {
		if _, err := f.WriteAt(zero, off); err != nil {
			f.Close()
			return fmt.Errorf("wipe %s: %w", dev, err)
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("wipe %s: %w", dev, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("wipe %s: %w", dev, err)
	}
	sig, err := ProbeDevice(dev)
	if err != nil {
		return fmt.Errorf("wipe %s: verify: %w", dev, err)
	}
	if sig.Content != api.ContentEmpty {
		return fmt.Errorf("wipe %s: still holds %s", dev, sig.Content)
	}
	return nil
}

// Rescan asks the SCSI hosts to look for new disks and LUNs, then runs
// MountAll so new datastores appear and lost ones are reported (DS-2).
func (m *Manager) Rescan(ctx context.Context) error {
	if m.cfg.SCSIHostDir != "" {
		hosts, _ := filepath.Glob(filepath.Join(m.cfg.SCSIHostDir, "*", "scan"))
		for _, h := range hosts {
			if err := os.WriteFile(h, []byte("- - -"), 0); err != nil {
				m.log.Warn("scsi rescan failed", "file", h, "err", err)
			}
		}
	}
	return m.MountAll(ctx)
}
