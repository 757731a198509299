package vm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/hostd/console"
	"github.com/flashvisor/flashvisor/hostd/macaddr"
	"github.com/flashvisor/flashvisor/hostd/qmp"
	"github.com/flashvisor/flashvisor/hostd/vmconfig"
	"github.com/flashvisor/flashvisor/internal/atomicfile"
)

// Errors callers map to API codes.
var (
	ErrNotFound   = errors.New("no such VM")
	ErrExists     = errors.New("VM already exists")
	ErrState      = errors.New("operation not allowed in the VM's state")
	ErrAdmission  = errors.New("refused by memory admission")
	ErrNoKVM      = errors.New("KVM is not available on this host")
	ErrInvalid    = errors.New("invalid VM configuration")
	ErrConflict   = errors.New("conflict")
	ErrNoSnapshot = errors.New("no such snapshot")
)

// Ports connects vNICs to port groups (the networking seam: a bridge per
// port group today, the VEM later).
type Ports interface {
	Attach(ctx context.Context, vm string, nic int, portGroup, mac string) (tap string, err error)
	Detach(ctx context.Context, vm string, nic int) error
	// Release frees the VM's ports for good (the VM left this host).
	Release(ctx context.Context, vm string) error
}

// Process is a running QEMU.
type Process interface {
	Pid() int
	// Done is closed when the process has exited.
	Done() <-chan struct{}
	// ExitStatus describes how it ended (valid after Done).
	ExitStatus() string
	Kill() error
}

// LaunchSpec is one QEMU start.
type LaunchSpec struct {
	Name    string
	Args    []string // without the program
	Dir     string   // working directory: the VM's directory
	LogFile string   // QEMU's stdout/stderr
	// MemoryMiB sizes the VM's cgroup.
	MemoryMiB int
	// QMPSocket is where QEMU will listen for QMP (fakes serve it).
	QMPSocket string
}

// Launcher starts QEMU processes and re-attaches to ones that outlived a
// previous hostd.
type Launcher interface {
	Launch(ctx context.Context, ls LaunchSpec) (Process, error)
	Adopt(pid int) (Process, error)
	// SetMemory resizes a running VM's limits (its cgroup) for
	// memoryMiB of guest memory, as LaunchSpec.MemoryMiB does at start.
	SetMemory(name string, memoryMiB int) error
}

// DiskTool creates and snapshots disk images (qemu-img).
type DiskTool interface {
	Create(ctx context.Context, path, format string, sizeMiB int64) error
	Snapshot(ctx context.Context, op, path, name string) error // op: create, apply, delete
}

// Config is what the Manager needs from the host.
type Config struct {
	Log *slog.Logger
	// InventoryFile records the registered VMs (on the state partition).
	InventoryFile string
	// RunDir holds per-VM runtime sockets and pid files (tmpfs).
	RunDir string
	// Datastore maps a datastore name to its mounted directory.
	Datastore func(name string) (string, error)
	Ports     Ports
	Launcher  Launcher
	Disks     DiskTool
	Dial      func(ctx context.Context, socket string) (*qmp.Client, error)
	// Accel is "kvm", or "tcg" only when the operator allowed emulation;
	// "" means no accelerator: power-on is refused with ErrNoKVM.
	Accel string
	// OVMFCode and OVMFVars are the UEFI firmware and its variable template.
	OVMFCode, OVMFVars string
	// HostMemoryMiB and OvercommitRatio drive admission: the memory of
	// running VMs may not exceed HostMemoryMiB*OvercommitRatio.
	HostMemoryMiB   int64
	OvercommitRatio float64
	// Publish reports an event (kind, target, message).
	Publish func(kind, target, message string)
	// Random feeds MAC generation.
	Random io.Reader
	// ShutdownTimeout bounds an ACPI shutdown before it is forced.
	ShutdownTimeout time.Duration
}

// Manager owns the VM inventory.
type Manager struct {
	cfg Config
	mu  sync.Mutex
	vms map[string]*machine
}

// machine is one VM: its spec and location, and its runtime when running.
type machine struct {
	spec      api.VMSpec
	datastore string // where its directory is
	relPath   string // parameter file path inside the datastore
	dir       string // absolute VM directory

	// busy serialises lifecycle operations on one VM.
	busy sync.Mutex

	state   string
	reason  string
	proc    Process
	mon     *qmp.Client
	hub     *console.Hub // serial console while running
	hotNICs int          // spare PCIe ports used by hot-added vNICs
	mem     memoryLayout // the running QEMU's memory
	started time.Time
	// stopping is set while hostd itself stops the VM, so the exit is
	// not reported as unexpected.
	stopping bool
}

type inventoryEntry struct {
	Datastore string `json:"datastore"`
	Path      string `json:"path"`
}

// New loads the inventory. VMs whose files are unreadable stay listed with
// a reason, so the operator sees them (a missing datastore is not a
// deleted VM).
func New(cfg Config) (*Manager, error) {
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 2 * time.Minute
	}
	if cfg.OvercommitRatio == 0 {
		cfg.OvercommitRatio = 1
	}
	if cfg.Publish == nil {
		cfg.Publish = func(string, string, string) {}
	}
	m := &Manager{cfg: cfg, vms: map[string]*machine{}}
	b, err := os.ReadFile(cfg.InventoryFile)
	if errors.Is(err, os.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	var inv []inventoryEntry
	if err := json.Unmarshal(b, &inv); err != nil {
		return nil, fmt.Errorf("inventory %s is corrupt (left untouched): %w", cfg.InventoryFile, err)
	}
	for _, e := range inv {
		mc, err := m.load(e.Datastore, e.Path)
		if err != nil {
			cfg.Log.Error("inventory VM unavailable", "datastore", e.Datastore, "path", e.Path, "err", err)
			name := strings.SplitN(e.Path, "/", 2)[0]
			mc = &machine{spec: api.VMSpec{Name: name}, datastore: e.Datastore, relPath: e.Path,
				state: api.VMPoweredOff, reason: "unavailable: " + err.Error()}
		}
		m.vms[mc.spec.Name] = mc
	}
	return m, nil
}

// load reads a VM's parameter file from a datastore.
func (m *Manager) load(ds, rel string) (*machine, error) {
	root, err := m.cfg.Datastore(ds)
	if err != nil {
		return nil, err
	}
	clean := filepath.Clean(rel)
	if filepath.IsAbs(clean) || strings.HasPrefix(clean, "..") {
		return nil, fmt.Errorf("%w: path %q leaves the datastore", ErrInvalid, rel)
	}
	p := filepath.Join(root, clean)
	spec, err := vmconfig.Load(p)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return &machine{spec: spec, datastore: ds, relPath: clean, dir: filepath.Dir(p), state: api.VMPoweredOff}, nil
}

// saveInventory persists the registered VMs; m.mu is held.
func (m *Manager) saveInventory() error {
	inv := make([]inventoryEntry, 0, len(m.vms))
	for _, mc := range m.vms {
		inv = append(inv, inventoryEntry{Datastore: mc.datastore, Path: mc.relPath})
	}
	sort.Slice(inv, func(i, j int) bool { return inv[i].Path < inv[j].Path })
	b, err := json.MarshalIndent(inv, "", "  ")
	if err != nil {
		return err
	}
	_, err = atomicfile.WriteIfChanged(m.cfg.InventoryFile, append(b, '\n'), 0o644)
	return err
}

func (m *Manager) get(name string) (*machine, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mc, ok := m.vms[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	return mc, nil
}

// List returns every VM with its status, by name.
func (m *Manager) List() []api.VM {
	m.mu.Lock()
	names := make([]string, 0, len(m.vms))
	for n := range m.vms {
		names = append(names, n)
	}
	m.mu.Unlock()
	sort.Strings(names)
	out := make([]api.VM, 0, len(names))
	for _, n := range names {
		if v, err := m.Get(n); err == nil {
			out = append(out, v)
		}
	}
	return out
}

// Get returns one VM.
func (m *Manager) Get(name string) (api.VM, error) {
	mc, err := m.get(name)
	if err != nil {
		return api.VM{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	st := api.VMStatus{State: mc.state, Reason: mc.reason}
	if mc.proc != nil {
		st.PID = mc.proc.Pid()
		st.Started = mc.started
		st.UptimeSeconds = time.Since(mc.started).Seconds()
		st.Accel = m.cfg.Accel
		st.MemoryUsedBytes, st.CPUSeconds = procUsage(st.PID)
		st.HotAddedMemoryMiB = mc.mem.hotAddedMiB()
	}
	return api.VM{Spec: mc.spec, Datastore: mc.datastore, Path: mc.relPath, Status: st}, nil
}

// inUseMACs lists other VMs' vNICs for MAC assignment; m.mu is held.
func (m *Manager) inUseMACs(except string) []macaddr.VMNICs {
	var out []macaddr.VMNICs
	for n, mc := range m.vms {
		if n != except {
			out = append(out, macaddr.VMNICs{VM: n, NICs: mc.spec.NICs})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].VM < out[j].VM })
	return out
}

// assignMACs fills and checks spec's MACs against the other VMs; m.mu is held.
func (m *Manager) assignMACs(spec *api.VMSpec) error {
	nics, changes, err := macaddr.Assign(m.inUseMACs(spec.Name), macaddr.VMNICs{VM: spec.Name, NICs: spec.NICs}, m.cfg.Random)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrConflict, err)
	}
	spec.NICs = nics
	for _, c := range changes {
		m.cfg.Log.Info("MAC assigned", "change", c.String())
		if c.Old != "" {
			m.cfg.Publish("vm.mac_changed", spec.Name, c.String())
		}
	}
	return nil
}

// CreateRequest creates a VM directory on a datastore.
type CreateRequest struct {
	Datastore string     `json:"datastore"`
	Spec      api.VMSpec `json:"spec"`
}

// Create makes the VM's directory, disks and parameter file and registers it.
func (m *Manager) Create(ctx context.Context, req CreateRequest) (api.VM, error) {
	spec := req.Spec
	if err := vmconfig.Validate(spec); err != nil {
		return api.VM{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	root, err := m.cfg.Datastore(req.Datastore)
	if err != nil {
		return api.VM{}, err
	}
	dir := filepath.Join(root, spec.Name)
	m.mu.Lock()
	if _, ok := m.vms[spec.Name]; ok {
		m.mu.Unlock()
		return api.VM{}, fmt.Errorf("%w: %q", ErrExists, spec.Name)
	}
	if err := m.assignMACs(&spec); err != nil {
		m.mu.Unlock()
		return api.VM{}, err
	}
	// Reserve the name while disks are made.
	mc := &machine{spec: spec, datastore: req.Datastore, relPath: filepath.Join(spec.Name, vmconfig.FileName(spec.Name)), dir: dir, state: api.VMPoweredOff, reason: "being created"}
	m.vms[spec.Name] = mc
	m.mu.Unlock()
	fail := func(err error) (api.VM, error) {
		m.mu.Lock()
		delete(m.vms, spec.Name)
		m.mu.Unlock()
		return api.VM{}, err
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fail(fmt.Errorf("%w: directory %s already exists on %s (register it instead)", ErrExists, spec.Name, req.Datastore))
		}
		return fail(fmt.Errorf("create VM directory: %w", err))
	}
	if err := m.createDisks(ctx, mc, spec); err != nil {
		os.RemoveAll(dir)
		return fail(err)
	}
	if err := vmconfig.Save(filepath.Join(dir, vmconfig.FileName(spec.Name)), spec); err != nil {
		os.RemoveAll(dir)
		return fail(err)
	}
	m.mu.Lock()
	mc.reason = ""
	err = m.saveInventory()
	m.mu.Unlock()
	if err != nil {
		return api.VM{}, err
	}
	m.claimPorts(ctx, spec)
	m.cfg.Publish("vm.created", spec.Name, "on "+req.Datastore)
	return m.Get(spec.Name)
}

// claimPorts gives each vNIC its switch port as the vNIC is created (or
// registered), not at its first power-on (HOSTD-6, VEM-2): Attach is
// idempotent and keeps a vNIC's vEth. A port that cannot be had now (a
// port group that does not exist yet) is logged; power-on tries again and
// fails with the reason.
func (m *Manager) claimPorts(ctx context.Context, spec api.VMSpec) {
	for i, n := range spec.NICs {
		if _, err := m.cfg.Ports.Attach(ctx, spec.Name, i, n.PortGroup, n.MAC); err != nil {
			m.cfg.Log.Warn("no switch port for the vNIC yet", "vm", spec.Name, "nic", i, "port_group", n.PortGroup, "err", err)
		}
	}
}

// createDisks makes the disks the spec asks hostd to create (thin and
// thick) that do not exist yet.
func (m *Manager) createDisks(ctx context.Context, mc *machine, spec api.VMSpec) error {
	for _, d := range spec.Disks {
		if d.Provisioning == api.ProvisionExisting {
			continue
		}
		p, err := m.resolve(mc.dir, d.File)
		if err != nil {
			return err
		}
		if _, err := os.Stat(p); err == nil {
			continue
		}
		format := api.DiskQcow2
		if d.Provisioning == api.ProvisionThick {
			format = api.DiskRaw
		}
		if err := m.cfg.Disks.Create(ctx, p, format, d.SizeMiB); err != nil {
			return fmt.Errorf("create disk %s: %w", d.File, err)
		}
	}
	return nil
}

// resolve turns a spec file reference into a host path.
func (m *Manager) resolve(dir, ref string) (string, error) {
	return resolveRef(m.cfg.Datastore, dir, ref)
}

// Register adds an existing VM directory (e.g. moved from another host).
func (m *Manager) Register(ctx context.Context, datastore, path string) (api.VM, error) {
	mc, err := m.load(datastore, path)
	if err != nil {
		return api.VM{}, err
	}
	m.mu.Lock()
	if _, ok := m.vms[mc.spec.Name]; ok {
		m.mu.Unlock()
		return api.VM{}, fmt.Errorf("%w: %q", ErrExists, mc.spec.Name)
	}
	before := append([]api.NIC(nil), mc.spec.NICs...)
	if err := m.assignMACs(&mc.spec); err != nil {
		m.mu.Unlock()
		return api.VM{}, err
	}
	changed := fmt.Sprint(before) != fmt.Sprint(mc.spec.NICs)
	m.vms[mc.spec.Name] = mc
	err = m.saveInventory()
	m.mu.Unlock()
	if err != nil {
		return api.VM{}, err
	}
	if changed {
		if err := vmconfig.Save(filepath.Join(mc.dir, filepath.Base(mc.relPath)), mc.spec); err != nil {
			return api.VM{}, err
		}
	}
	m.claimPorts(ctx, mc.spec)
	m.cfg.Publish("vm.registered", mc.spec.Name, "["+datastore+"] "+path)
	return m.Get(mc.spec.Name)
}

// Unregister removes a powered-off VM from the inventory, keeping its files.
func (m *Manager) Unregister(ctx context.Context, name string) error {
	mc, err := m.get(name)
	if err != nil {
		return err
	}
	mc.busy.Lock()
	defer mc.busy.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	if mc.state != api.VMPoweredOff && mc.state != api.VMSuspended {
		return fmt.Errorf("%w: %s is %s; power it off first", ErrState, name, mc.state)
	}
	delete(m.vms, name)
	if err := m.saveInventory(); err != nil {
		return err
	}
	if err := m.cfg.Ports.Release(ctx, name); err != nil {
		m.cfg.Log.Warn("release ports", "vm", name, "err", err)
	}
	m.cfg.Publish("vm.unregistered", name, "")
	return nil
}

// Destroy unregisters a powered-off VM and deletes its directory.
func (m *Manager) Destroy(ctx context.Context, name string) error {
	mc, err := m.get(name)
	if err != nil {
		return err
	}
	dir := mc.dir
	if err := m.Unregister(ctx, name); err != nil {
		return err
	}
	if dir == "" {
		return nil
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("delete %s: %w", dir, err)
	}
	m.cfg.Publish("vm.destroyed", name, "")
	return nil
}

// Reconfigure replaces a VM's spec (same name). A powered-off VM may
// change anything; a running one may only grow: SCSI disks, vNICs and,
// with memory hot-add, memory (see hotChanges).
func (m *Manager) Reconfigure(ctx context.Context, name string, spec api.VMSpec) (api.VM, error) {
	if spec.Name != name {
		return api.VM{}, fmt.Errorf("%w: renaming %s to %s is not supported", ErrInvalid, name, spec.Name)
	}
	mc, err := m.get(name)
	if err != nil {
		return api.VM{}, err
	}
	mc.busy.Lock()
	defer mc.busy.Unlock()
	m.mu.Lock()
	state, cur := mc.state, mc.spec
	m.mu.Unlock()
	if state != api.VMPoweredOff && state != api.VMPoweredOn && state != api.VMPaused {
		return api.VM{}, fmt.Errorf("%w: %s is %s; reconfigure needs it powered off (or running, to add devices or memory)", ErrState, name, state)
	}
	// A running VM's limits come first: growing memory beyond its
	// maximum is refused for its state, not as an invalid spec.
	if state != api.VMPoweredOff {
		if _, err := hotChanges(cur, spec); err != nil {
			return api.VM{}, err
		}
	}
	if err := vmconfig.Validate(spec); err != nil {
		return api.VM{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	m.mu.Lock()
	err = m.assignMACs(&spec)
	m.mu.Unlock()
	if err != nil {
		return api.VM{}, err
	}
	if state == api.VMPoweredOff {
		if err := m.createDisks(ctx, mc, spec); err != nil {
			return api.VM{}, err
		}
	} else if err := m.hotAdd(ctx, mc, cur, spec); err != nil {
		return api.VM{}, err
	}
	if err := vmconfig.Save(filepath.Join(mc.dir, filepath.Base(mc.relPath)), spec); err != nil {
		return api.VM{}, err
	}
	m.mu.Lock()
	mc.spec = spec
	m.mu.Unlock()
	m.claimPorts(ctx, spec)
	m.cfg.Publish("vm.reconfigured", name, "")
	return m.Get(name)
}

// procUsage reads a process's resident memory and CPU time from /proc.
func procUsage(pid int) (rss uint64, cpu float64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 22 {
		return 0, 0
	}
	var utime, stime, pages uint64
	fmt.Sscan(f[11], &utime)
	fmt.Sscan(f[12], &stime)
	fmt.Sscan(f[21], &pages)
	const ticks = 100 // USER_HZ on Linux
	return pages * uint64(os.Getpagesize()), float64(utime+stime) / ticks
}
