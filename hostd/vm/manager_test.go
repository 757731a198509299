package vm

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/hostd/macaddr"
	"github.com/flashvisor/flashvisor/hostd/qmp"
	"github.com/flashvisor/flashvisor/hostd/qmp/qmptest"
)

// fakeQEMU is a launched "QEMU": a qmptest VM served on the QMP socket
// hostd asked for, whose process ends when the guest powers off or QMP
// quit is called.
type fakeQEMU struct {
	vm   *qmptest.VM
	l    net.Listener
	pid  int
	done chan struct{}
	once sync.Once
	args []string
}

func (p *fakeQEMU) Pid() int              { return p.pid }
func (p *fakeQEMU) Done() <-chan struct{} { return p.done }
func (p *fakeQEMU) ExitStatus() string    { return "exit status 0" }
func (p *fakeQEMU) Kill() error           { p.exit(); return nil }
func (p *fakeQEMU) exit() {
	p.once.Do(func() {
		p.l.Close()
		p.vm.Hangup()
		close(p.done)
	})
}

type fakeLauncher struct {
	mu     sync.Mutex
	procs  map[int]*fakeQEMU
	next   int
	last   *fakeQEMU
	limits map[string]int // VM -> memory MiB its limits were set for
}

// fakeOptions makes the fake what QEMU's arguments ask for: its memory
// (-m, and the DIMMs of a resume: -object memory-backend-ram, -device
// pc-dimm) and "-incoming defer".
func fakeOptions(args []string) []qmptest.VMOption {
	kv := func(s string) map[string]string {
		m := map[string]string{}
		for _, p := range strings.Split(s, ",") {
			k, v, ok := strings.Cut(p, "=")
			if !ok {
				k, v = "", p
			}
			m[k] = v
		}
		return m
	}
	mib := func(s string) int {
		var n int
		fmt.Sscanf(strings.TrimSuffix(s, "M"), "%d", &n)
		return n
	}
	var opts []qmptest.VMOption
	backends := map[string]int{}
	if slices.Contains(args, "-incoming") {
		opts = append(opts, qmptest.Incoming())
	}
	for i := 0; i+1 < len(args); i++ {
		o := kv(args[i+1])
		switch {
		case args[i] == "-m" && o["size"] == "":
			opts = append(opts, qmptest.Memory(mib(o[""]), 0, mib(o[""])))
		case args[i] == "-m":
			var slots int
			fmt.Sscan(o["slots"], &slots)
			opts = append(opts, qmptest.Memory(mib(o["size"]), slots, mib(o["maxmem"])))
		case args[i] == "-object" && o[""] == "memory-backend-ram":
			backends[o["id"]] = mib(o["size"])
		case args[i] == "-device" && o[""] == "pc-dimm":
			opts = append(opts, qmptest.ColdDIMM(o["id"], o["memdev"], backends[o["memdev"]]))
		}
	}
	return opts
}

func (f *fakeLauncher) SetMemory(name string, memoryMiB int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.limits == nil {
		f.limits = map[string]int{}
	}
	f.limits[name] = memoryMiB
	return nil
}

func (f *fakeLauncher) limit(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.limits[name]
}

func (f *fakeLauncher) Launch(ctx context.Context, ls LaunchSpec) (Process, error) {
	v := qmptest.NewVM(fakeOptions(ls.Args)...)
	f.SetMemory(ls.Name, ls.MemoryMiB)
	l, err := net.Listen("unix", ls.QMPSocket)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.next++
	p := &fakeQEMU{vm: v, l: l, pid: 1000 + f.next, done: make(chan struct{}), args: ls.Args}
	if f.procs == nil {
		f.procs = map[int]*fakeQEMU{}
	}
	f.procs[p.pid] = p
	f.last = p
	f.mu.Unlock()
	v.Handle("system_powerdown", func(json.RawMessage) (any, error) {
		go func() {
			v.Emit(qmp.EventShutdown, qmp.ShutdownData{Guest: true, Reason: "guest-shutdown"})
			time.Sleep(20 * time.Millisecond)
			p.exit()
		}()
		return nil, nil
	})
	v.Handle("quit", func(json.RawMessage) (any, error) {
		go func() { time.Sleep(20 * time.Millisecond); p.exit() }()
		return nil, nil
	})
	v.Handle("blockdev-add", func(json.RawMessage) (any, error) { return map[string]any{}, nil })
	go v.ServeListener(l)
	// QEMU writes its pid file.
	os.WriteFile(filepath.Join(filepath.Dir(ls.QMPSocket), pidFile), []byte(fmt.Sprint(p.pid)), 0o644)
	return p, nil
}

func (f *fakeLauncher) Adopt(pid int) (Process, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.procs[pid]
	if !ok {
		return nil, errors.New("no such process")
	}
	select {
	case <-p.done:
		return nil, errors.New("exited")
	default:
	}
	return p, nil
}

type fakePorts struct {
	mu       sync.Mutex
	attached map[string]string // "vm/nic" -> port group
}

func (f *fakePorts) Attach(ctx context.Context, vm string, nic int, pg, mac string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if pg == "missing" {
		return "", errors.New("no port group missing")
	}
	if f.attached == nil {
		f.attached = map[string]string{}
	}
	f.attached[fmt.Sprintf("%s/%d", vm, nic)] = pg
	return fmt.Sprintf("tap-%s-%d", vm, nic), nil
}

func (f *fakePorts) Detach(ctx context.Context, vm string, nic int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.attached, fmt.Sprintf("%s/%d", vm, nic))
	return nil
}

func (f *fakePorts) Release(ctx context.Context, vm string) error { return nil }

func (f *fakePorts) count() int { f.mu.Lock(); defer f.mu.Unlock(); return len(f.attached) }

type fakeDisks struct {
	mu  sync.Mutex
	ops []string
}

func (f *fakeDisks) Create(ctx context.Context, path, format string, size int64) error {
	f.mu.Lock()
	f.ops = append(f.ops, "create "+format+" "+filepath.Base(path))
	f.mu.Unlock()
	return os.WriteFile(path, []byte(format), 0o644)
}

func (f *fakeDisks) Snapshot(ctx context.Context, op, path, name string) error {
	f.mu.Lock()
	f.ops = append(f.ops, op+" "+name+" "+filepath.Base(path))
	f.mu.Unlock()
	return nil
}

type env struct {
	m      *Manager
	cfg    Config
	ds     string
	launch *fakeLauncher
	ports  *fakePorts
	disks  *fakeDisks
	events chan string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ds := t.TempDir()
	run, err := os.MkdirTemp("", "fvrun") // short: socket paths
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(run) })
	e := &env{ds: ds, launch: &fakeLauncher{}, ports: &fakePorts{}, disks: &fakeDisks{}, events: make(chan string, 100)}
	e.cfg = Config{
		Log:           slog.New(slog.NewTextHandler(testWriter{t}, nil)),
		InventoryFile: filepath.Join(t.TempDir(), "inventory.json"),
		RunDir:        run,
		Datastore: func(name string) (string, error) {
			if name != "ds1" {
				return "", fmt.Errorf("no datastore %q", name)
			}
			return ds, nil
		},
		Ports: e.ports, Launcher: e.launch, Disks: e.disks,
		Dial:          func(ctx context.Context, p string) (*qmp.Client, error) { return qmp.Dial(ctx, p) },
		Accel:         "kvm",
		HostMemoryMiB: 1024, OvercommitRatio: 1,
		Publish:         func(kind, target, msg string) { e.events <- kind + " " + target },
		Random:          rand.Reader,
		ShutdownTimeout: 2 * time.Second,
	}
	e.m = e.newManager(t)
	return e
}

func (e *env) newManager(t *testing.T) *Manager {
	m, err := New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func spec(name string, memMiB int) api.VMSpec {
	return api.VMSpec{
		Name: name, VCPUs: 1, MemoryMiB: memMiB, Firmware: api.FirmwareBIOS,
		SCSIControllers: []api.SCSIController{{Model: api.SCSIVirtio}},
		Disks:           []api.VirtualDisk{{Bus: api.DiskBusSCSI, File: name + ".qcow2", Provisioning: api.ProvisionThin, SizeMiB: 64}},
		NICs:            []api.NIC{{Model: api.NICVirtio, PortGroup: "VM Network", AddressType: api.MACGenerated}},
		SerialConsole:   true,
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

func state(t *testing.T, m *Manager, name string) string {
	t.Helper()
	v, err := m.Get(name)
	if err != nil {
		t.Fatal(err)
	}
	return v.Status.State
}

func waitState(t *testing.T, m *Manager, name, want string) {
	t.Helper()
	for i := 0; i < 400; i++ {
		if state(t, m, name) == want {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s state = %s, want %s", name, state(t, m, name), want)
}

func TestCreatePowerOnGuestShutdown(t *testing.T) {
	e := newEnv(t)
	v, err := e.m.Create(ctx(t), CreateRequest{Datastore: "ds1", Spec: spec("web01", 512)})
	if err != nil {
		t.Fatal(err)
	}
	if err := macaddr.CheckGenerated(v.Spec.NICs[0].MAC); err != nil {
		t.Errorf("generated MAC %q: %v", v.Spec.NICs[0].MAC, err)
	}
	for _, f := range []string{"web01.fvx", "web01.qcow2"} {
		if _, err := os.Stat(filepath.Join(e.ds, "web01", f)); err != nil {
			t.Errorf("VM directory lacks %s: %v", f, err)
		}
	}
	if _, err := e.m.Create(ctx(t), CreateRequest{Datastore: "ds1", Spec: spec("web01", 512)}); !errors.Is(err, ErrExists) {
		t.Errorf("second Create = %v, want ErrExists", err)
	}
	// The vNIC's switch port comes with the vNIC, before any power-on.
	if n := e.ports.count(); n != 1 {
		t.Errorf("after Create: %d ports, want the vNIC's", n)
	}
	v, err = e.m.PowerOn(ctx(t), "web01")
	if err != nil {
		t.Fatal(err)
	}
	if v.Status.State != api.VMPoweredOn || v.Status.PID == 0 || e.ports.count() != 1 {
		t.Fatalf("after PowerOn: %+v, %d ports attached", v.Status, e.ports.count())
	}
	args := strings.Join(e.launch.last.args, " ")
	if !strings.Contains(args, "tap-web01-0") || !strings.Contains(args, v.Spec.NICs[0].MAC) {
		t.Errorf("QEMU args lack the tap or MAC: %s", args)
	}
	if _, err := e.m.PowerOn(ctx(t), "web01"); !errors.Is(err, ErrState) {
		t.Errorf("PowerOn twice = %v, want ErrState", err)
	}
	if _, err := e.m.Shutdown(ctx(t), "web01", 0); err != nil {
		t.Fatal(err)
	}
	if s := state(t, e.m, "web01"); s != api.VMPoweredOff || e.ports.count() != 0 {
		t.Errorf("after ACPI shutdown: state %s, %d ports; want poweredOff, 0", s, e.ports.count())
	}
}

func TestGuestInitiatedPowerOffAndCrash(t *testing.T) {
	e := newEnv(t)
	e.m.Create(ctx(t), CreateRequest{Datastore: "ds1", Spec: spec("a", 256)})
	if _, err := e.m.PowerOn(ctx(t), "a"); err != nil {
		t.Fatal(err)
	}
	p := e.launch.last
	p.vm.Emit(qmp.EventShutdown, qmp.ShutdownData{Guest: true, Reason: "guest-shutdown"})
	time.Sleep(50 * time.Millisecond)
	p.exit()
	waitState(t, e.m, "a", api.VMPoweredOff)

	if _, err := e.m.PowerOn(ctx(t), "a"); err != nil {
		t.Fatal(err)
	}
	e.launch.last.exit() // QEMU dies without a shutdown
	waitState(t, e.m, "a", api.VMCrashed)
	if v, _ := e.m.Get("a"); !strings.Contains(v.Status.Reason, "unexpectedly") {
		t.Errorf("crash reason = %q", v.Status.Reason)
	}
	if _, err := e.m.PowerOn(ctx(t), "a"); err != nil {
		t.Errorf("PowerOn after a crash = %v, want it allowed", err)
	}
}

func TestAdmissionAndNoKVM(t *testing.T) {
	e := newEnv(t)
	e.m.Create(ctx(t), CreateRequest{Datastore: "ds1", Spec: spec("small", 512)})
	e.m.Create(ctx(t), CreateRequest{Datastore: "ds1", Spec: spec("big", 768)})
	if _, err := e.m.PowerOn(ctx(t), "small"); err != nil {
		t.Fatal(err)
	}
	_, err := e.m.PowerOn(ctx(t), "big")
	if !errors.Is(err, ErrAdmission) || !strings.Contains(err.Error(), "768") {
		t.Errorf("PowerOn(big) = %v, want ErrAdmission naming 768 MiB", err)
	}
	if state(t, e.m, "big") != api.VMPoweredOff {
		t.Errorf("refused VM is not powered off")
	}
	e.m.cfg.Accel = ""
	if _, err := e.m.PowerOn(ctx(t), "big"); !errors.Is(err, ErrNoKVM) {
		t.Errorf("PowerOn without KVM = %v, want ErrNoKVM", err)
	}
}

func TestPortGroupMissingLeavesNothingBehind(t *testing.T) {
	e := newEnv(t)
	s := spec("net", 256)
	s.NICs = append(s.NICs, api.NIC{Model: api.NICE1000, PortGroup: "missing", AddressType: api.MACGenerated})
	if _, err := e.m.Create(ctx(t), CreateRequest{Datastore: "ds1", Spec: s}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.PowerOn(ctx(t), "net"); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("PowerOn with a missing port group = %v", err)
	}
	if e.ports.count() != 0 {
		t.Errorf("%d ports left attached after a failed power-on", e.ports.count())
	}
}

func TestAdoptAfterRestart(t *testing.T) {
	e := newEnv(t)
	e.m.Create(ctx(t), CreateRequest{Datastore: "ds1", Spec: spec("keep", 256)})
	if _, err := e.m.PowerOn(ctx(t), "keep"); err != nil {
		t.Fatal(err)
	}
	pid := e.launch.last.pid
	// hostd dies: its QMP connection closes (QEMU, like the fake, serves one
	// client at a time). A new hostd: same inventory and run directory.
	e.m.mu.Lock()
	for _, mc := range e.m.vms {
		if mc.mon != nil {
			mc.mon.Close()
		}
	}
	e.m.mu.Unlock()
	m2 := e.newManager(t)
	if s := state(t, m2, "keep"); s != api.VMPoweredOff {
		t.Fatalf("before Adopt: %s", s)
	}
	m2.Adopt(ctx(t))
	v, _ := m2.Get("keep")
	if v.Status.State != api.VMPoweredOn || v.Status.PID != pid {
		t.Fatalf("after Adopt: %+v, want poweredOn with pid %d", v.Status, pid)
	}
	if _, err := m2.PowerOff(ctx(t), "keep"); err != nil {
		t.Fatal(err)
	}
	if s := state(t, m2, "keep"); s != api.VMPoweredOff {
		t.Errorf("adopted VM after PowerOff: %s", s)
	}
}

func TestRegisterKeepsMACAndDestroy(t *testing.T) {
	e := newEnv(t)
	v, _ := e.m.Create(ctx(t), CreateRequest{Datastore: "ds1", Spec: spec("mover", 256)})
	mac := v.Spec.NICs[0].MAC
	if err := e.m.Unregister(ctx(t), "mover"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Get("mover"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Unregister = %v", err)
	}
	v, err := e.m.Register(ctx(t), "ds1", "mover/mover.fvx")
	if err != nil {
		t.Fatal(err)
	}
	if v.Spec.NICs[0].MAC != mac {
		t.Errorf("MAC after re-register = %s, want %s", v.Spec.NICs[0].MAC, mac)
	}
	if _, err := e.m.Register(ctx(t), "ds1", "../etc/passwd"); err == nil {
		t.Error("Register outside the datastore succeeded")
	}
	// The inventory survives a restart.
	if _, err := e.newManager(t).Get("mover"); err != nil {
		t.Errorf("inventory after restart: %v", err)
	}
	if err := e.m.Destroy(ctx(t), "mover"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(e.ds, "mover")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("directory after Destroy: %v", err)
	}
}

func TestRegisterRegeneratesConflictingGeneratedMAC(t *testing.T) {
	e := newEnv(t)
	a, _ := e.m.Create(ctx(t), CreateRequest{Datastore: "ds1", Spec: spec("a", 256)})
	// A copy of a's directory registered as b has a's MAC: regenerate.
	s := a.Spec
	s.Name = "b"
	os.MkdirAll(filepath.Join(e.ds, "b"), 0o755)
	if err := saveSpecFile(filepath.Join(e.ds, "b", "b.fvx"), s); err != nil {
		t.Fatal(err)
	}
	b, err := e.m.Register(ctx(t), "ds1", "b/b.fvx")
	if err != nil {
		t.Fatal(err)
	}
	if b.Spec.NICs[0].MAC == a.Spec.NICs[0].MAC {
		t.Errorf("b kept a's MAC %s", a.Spec.NICs[0].MAC)
	}
}

func TestSnapshotsOffAndRunning(t *testing.T) {
	e := newEnv(t)
	e.m.Create(ctx(t), CreateRequest{Datastore: "ds1", Spec: spec("s", 256)})
	if _, err := e.m.CreateSnapshot(ctx(t), "s", "base", "clean install"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.CreateSnapshot(ctx(t), "s", "base", ""); !errors.Is(err, ErrConflict) {
		t.Errorf("duplicate snapshot = %v, want ErrConflict", err)
	}
	if _, err := e.m.CreateSnapshot(ctx(t), "s", "bad name!", ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad snapshot name = %v, want ErrInvalid", err)
	}
	if err := e.m.RevertSnapshot(ctx(t), "s", "base"); err != nil {
		t.Fatal(err)
	}
	if err := e.m.RevertSnapshot(ctx(t), "s", "nope"); !errors.Is(err, ErrNoSnapshot) {
		t.Errorf("revert unknown = %v", err)
	}
	want := []string{"create qcow2 s.qcow2", "create base s.qcow2", "apply base s.qcow2"}
	if fmt.Sprint(e.disks.ops) != fmt.Sprint(want) {
		t.Errorf("disk ops = %v, want %v", e.disks.ops, want)
	}
	// Running: savevm through the monitor, with memory. The fake HMP
	// answers with text, which hostd must report as the error it is.
	if _, err := e.m.PowerOn(ctx(t), "s"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.CreateSnapshot(ctx(t), "s", "live", ""); err == nil || !strings.Contains(err.Error(), "savevm live") {
		t.Errorf("CreateSnapshot with HMP output = %v, want that output as an error", err)
	}
	e.launch.last.vm.Handle("human-monitor-command", func(json.RawMessage) (any, error) { return "", nil })
	snap, err := e.m.CreateSnapshot(ctx(t), "s", "live", "")
	if err != nil || !snap.Memory || snap.Parent != "base" {
		t.Errorf("live snapshot = %+v, %v; want memory, parent base", snap, err)
	}
	list, _ := e.m.Snapshots("s")
	if len(list) != 2 {
		t.Errorf("Snapshots = %+v", list)
	}
	if err := e.m.DeleteSnapshot(ctx(t), "s", "base"); err != nil {
		t.Fatal(err)
	}
	if list, _ := e.m.Snapshots("s"); len(list) != 1 || list[0].Parent != "" {
		t.Errorf("after delete: %+v", list)
	}
}

func TestAutostartOrder(t *testing.T) {
	e := newEnv(t)
	e.cfg.HostMemoryMiB = 4096
	e.m = e.newManager(t)
	for _, c := range []struct {
		name  string
		order int
		on    bool
	}{{"last", 0, true}, {"second", 2, true}, {"first", 1, true}, {"never", 0, false}} {
		s := spec(c.name, 256)
		s.Autostart = api.Autostart{Enabled: c.on, Order: c.order}
		if _, err := e.m.Create(ctx(t), CreateRequest{Datastore: "ds1", Spec: s}); err != nil {
			t.Fatal(err)
		}
	}
	for len(e.events) > 0 {
		<-e.events
	}
	e.m.Autostart(ctx(t))
	var order []string
	for len(e.events) > 0 {
		if ev := <-e.events; strings.HasPrefix(ev, "vm.autostarted ") {
			order = append(order, strings.TrimPrefix(ev, "vm.autostarted "))
		}
	}
	if fmt.Sprint(order) != "[first second last]" {
		t.Errorf("autostart order = %v, want [first second last]", order)
	}
	if state(t, e.m, "never") != api.VMPoweredOff {
		t.Error("VM without autostart was started")
	}
	e.m.ShutdownAll(ctx(t))
	for _, v := range e.m.List() {
		if v.Status.State != api.VMPoweredOff {
			t.Errorf("after ShutdownAll %s is %s", v.Spec.Name, v.Status.State)
		}
	}
}

func TestCorruptInventoryIsAnErrorAndKept(t *testing.T) {
	e := newEnv(t)
	os.WriteFile(e.cfg.InventoryFile, []byte("{nope"), 0o644)
	if _, err := New(e.cfg); err == nil {
		t.Fatal("New with a corrupt inventory = nil error")
	}
	if b, _ := os.ReadFile(e.cfg.InventoryFile); string(b) != "{nope" {
		t.Errorf("corrupt inventory was rewritten: %q", b)
	}
}

func TestHotAddWhileRunning(t *testing.T) {
	e := newEnv(t)
	e.m.Create(ctx(t), CreateRequest{Datastore: "ds1", Spec: spec("hot", 256)})
	if _, err := e.m.PowerOn(ctx(t), "hot"); err != nil {
		t.Fatal(err)
	}
	v, _ := e.m.Get("hot")
	next := v.Spec
	next.Disks = append(append([]api.VirtualDisk(nil), next.Disks...), api.VirtualDisk{Bus: api.DiskBusSCSI, Unit: 1, File: "hot_1.qcow2", Provisioning: api.ProvisionThin, SizeMiB: 32})
	next.NICs = append(append([]api.NIC(nil), next.NICs...), api.NIC{Model: api.NICVirtio, PortGroup: "VM Network", AddressType: api.MACGenerated})
	got, err := e.m.Reconfigure(ctx(t), "hot", next)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Spec.Disks) != 2 || len(got.Spec.NICs) != 2 || got.Spec.NICs[1].MAC == "" {
		t.Errorf("after hot add: %+v", got.Spec)
	}
	devs := e.launch.last.vm.Devices()
	if devs["scsi0-1"] != "scsi-hd" || devs["ethernet1"] != "virtio-net-pci" {
		t.Errorf("QEMU devices = %v, want scsi0-1 scsi-hd and ethernet1 virtio-net-pci", devs)
	}
	if e.ports.count() != 2 {
		t.Errorf("%d ports attached, want 2", e.ports.count())
	}
	// Anything but additions needs a power off.
	more := got.Spec
	more.VCPUs = 2
	if _, err := e.m.Reconfigure(ctx(t), "hot", more); !errors.Is(err, ErrState) {
		t.Errorf("changing vCPUs while running = %v, want ErrState", err)
	}
	fewer := got.Spec
	fewer.NICs = fewer.NICs[:1]
	if _, err := e.m.Reconfigure(ctx(t), "hot", fewer); !errors.Is(err, ErrState) {
		t.Errorf("removing a vNIC while running = %v, want ErrState", err)
	}
	// The saved file has the new devices: the next power-on starts with them.
	if v, _ := e.newManager(t).Get("hot"); len(v.Spec.Disks) != 2 || len(v.Spec.NICs) != 2 {
		t.Errorf("saved spec after hot add: %+v", v.Spec)
	}
}

// growable is a VM with memory hot-add: 256 MiB, up to maxMiB.
func growable(name string, maxMiB int) api.VMSpec {
	s := spec(name, 256)
	s.MemoryHotAdd, s.MaxMemoryMiB = true, maxMiB
	return s
}

// withMemory is v's spec with memMiB of memory.
func withMemory(t *testing.T, m *Manager, name string, memMiB int) api.VMSpec {
	t.Helper()
	v, err := m.Get(name)
	if err != nil {
		t.Fatal(err)
	}
	v.Spec.MemoryMiB = memMiB
	return v.Spec
}

func argsOf(p *fakeQEMU) string { return strings.Join(p.args, " ") }

func TestMemoryHotAdd(t *testing.T) {
	e := newEnv(t)
	e.cfg.HostMemoryMiB = 4096
	e.m = e.newManager(t)
	if _, err := e.m.Create(ctx(t), CreateRequest{Datastore: "ds1", Spec: growable("grow", 768)}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.PowerOn(ctx(t), "grow"); err != nil {
		t.Fatal(err)
	}
	if a := argsOf(e.launch.last); !strings.Contains(a, "-m size=256M,slots=16,maxmem=768M") {
		t.Errorf("QEMU args = %s, want -m size=256M,slots=16,maxmem=768M", a)
	}
	v, err := e.m.Reconfigure(ctx(t), "grow", withMemory(t, e.m, "grow", 512))
	if err != nil {
		t.Fatal(err)
	}
	if v.Spec.MemoryMiB != 512 || v.Status.HotAddedMemoryMiB != 256 || v.Status.State != api.VMPoweredOn {
		t.Errorf("after hot-add: memory %d MiB, hot-added %d MiB, %s; want 512, 256, poweredOn", v.Spec.MemoryMiB, v.Status.HotAddedMemoryMiB, v.Status.State)
	}
	fake := e.launch.last.vm
	var cmds []string
	for _, c := range fake.Commands() {
		if c.Name == "object-add" || c.Name == "device_add" {
			cmds = append(cmds, c.Name+" "+string(c.Args))
		}
	}
	want := []string{
		`object-add {"id":"mem-dimm0","qom-type":"memory-backend-ram","size":268435456}`,
		`device_add {"driver":"pc-dimm","id":"dimm0","memdev":"mem-dimm0","slot":0}`,
	}
	if diff := cmp.Diff(want, cmds); diff != "" {
		t.Errorf("QMP commands (-want +got):\n%s", diff)
	}
	if got := e.launch.limit("grow"); got != 512 {
		t.Errorf("memory limit set for %d MiB, want 512", got)
	}
	if v, _ := e.newManager(t).Get("grow"); v.Spec.MemoryMiB != 512 {
		t.Errorf("parameter file after hot-add: memSize %d, want 512", v.Spec.MemoryMiB)
	}

	// A second DIMM, then suspend and resume: QEMU comes back with the
	// layout the saved state was made with.
	if _, err := e.m.Reconfigure(ctx(t), "grow", withMemory(t, e.m, "grow", 640)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Suspend(ctx(t), "grow"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(e.ds, "grow", "grow.fvdimm")); err != nil {
		t.Errorf("memory layout of the suspended VM: %v", err)
	}
	if _, err := e.m.PowerOn(ctx(t), "grow"); err != nil {
		t.Fatal(err)
	}
	a := argsOf(e.launch.last)
	for _, w := range []string{"-m size=256M,slots=16,maxmem=768M",
		"-object memory-backend-ram,id=mem-dimm0,size=256M -device pc-dimm,id=dimm0,memdev=mem-dimm0,slot=0,addr=4294967296",
		"-object memory-backend-ram,id=mem-dimm1,size=128M -device pc-dimm,id=dimm1,memdev=mem-dimm1,slot=1,addr=4563402752"} {
		if !strings.Contains(a, w) {
			t.Errorf("resume args = %s\nwant them to contain %s", a, w)
		}
	}
	// The DIMM count goes on from the layout.
	v, err = e.m.Reconfigure(ctx(t), "grow", withMemory(t, e.m, "grow", 768))
	if err != nil {
		t.Fatal(err)
	}
	if v.Status.HotAddedMemoryMiB != 512 {
		t.Errorf("hot-added after the resume and a third DIMM = %d MiB, want 512", v.Status.HotAddedMemoryMiB)
	}
	if d := e.launch.last.vm.Devices(); d["dimm2"] != "pc-dimm" {
		t.Errorf("devices after the third hot-add = %v, want dimm2", d)
	}

	// Power off: the next power-on starts with all of it.
	if _, err := e.m.PowerOff(ctx(t), "grow"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(e.ds, "grow", "grow.fvdimm")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("memory layout after power off: %v, want it gone", err)
	}
	v, err = e.m.PowerOn(ctx(t), "grow")
	if err != nil {
		t.Fatal(err)
	}
	if a := argsOf(e.launch.last); !strings.Contains(a, "-m 768M ") || strings.Contains(a, "pc-dimm") {
		t.Errorf("QEMU args after power off and on = %s, want -m 768M without DIMMs", a)
	}
	if v.Status.HotAddedMemoryMiB != 0 {
		t.Errorf("hot-added after a fresh power-on = %d MiB, want 0", v.Status.HotAddedMemoryMiB)
	}
}

func TestMemoryHotAddRefused(t *testing.T) {
	e := newEnv(t)
	e.cfg.HostMemoryMiB = 1024
	e.m = e.newManager(t)
	e.m.Create(ctx(t), CreateRequest{Datastore: "ds1", Spec: growable("grow", 768)})
	e.m.Create(ctx(t), CreateRequest{Datastore: "ds1", Spec: spec("fixed", 256)})
	e.m.Create(ctx(t), CreateRequest{Datastore: "ds1", Spec: spec("other", 384)})
	for _, n := range []string{"grow", "fixed", "other"} {
		if _, err := e.m.PowerOn(ctx(t), n); err != nil {
			t.Fatal(err)
		}
	}
	growing := func(f func(*api.VMSpec)) api.VMSpec {
		s := withMemory(t, e.m, "grow", 256)
		f(&s)
		return s
	}
	for _, tc := range []struct {
		name string
		vm   string
		spec api.VMSpec
		want error
		msg  string
	}{
		{"shrink", "grow", growing(func(s *api.VMSpec) { s.MemoryMiB = 128 }), ErrState, "cannot shrink"},
		{"beyond the maximum", "grow", growing(func(s *api.VMSpec) { s.MemoryMiB = 896 }), ErrState, "can grow to 768 MiB"},
		{"not whole blocks", "grow", growing(func(s *api.VMSpec) { s.MemoryMiB = 320 }), ErrInvalid, "blocks of 128 MiB"},
		{"maximum changed", "grow", growing(func(s *api.VMSpec) { s.MaxMemoryMiB = 1024 }), ErrState, "power it off"},
		{"hot-add turned off", "grow", growing(func(s *api.VMSpec) { s.MemoryHotAdd, s.MaxMemoryMiB = false, 0 }), ErrState, "power it off"},
		{"without hot-add", "fixed", withMemory(t, e.m, "fixed", 512), ErrState, "memory hot-add is off"},
		// 384 + 256 of the others, and 512: more than the host's 1024 MiB.
		{"admission", "grow", growing(func(s *api.VMSpec) { s.MemoryMiB = 512 }), ErrAdmission, "grow needs 512 MiB"},
	} {
		_, err := e.m.Reconfigure(ctx(t), tc.vm, tc.spec)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: Reconfigure = %v, want %v saying %q", tc.name, err, tc.want, tc.msg)
		}
	}
	for _, n := range []string{"grow", "fixed"} {
		v, _ := e.m.Get(n)
		if v.Spec.MemoryMiB != 256 || v.Status.HotAddedMemoryMiB != 0 {
			t.Errorf("%s after refusals: %d MiB, %d hot-added; want 256, 0", n, v.Spec.MemoryMiB, v.Status.HotAddedMemoryMiB)
		}
	}
	if names := e.launch.procs[1001].vm.CommandNames(); slices.Contains(names, "object-add") {
		t.Errorf("QEMU of grow got %v after refusals, want no object-add", names)
	}

	// QEMU refuses the DIMM: the backend goes, the limit comes back.
	e.m.PowerOff(ctx(t), "other")
	fake := e.launch.procs[1001].vm
	fake.Handle("device_add", func(json.RawMessage) (any, error) {
		return nil, &qmp.Error{Class: "GenericError", Desc: "a used vhost backend has no free memory slots left"}
	})
	if _, err := e.m.Reconfigure(ctx(t), "grow", growing(func(s *api.VMSpec) { s.MemoryMiB = 512 })); err == nil || !strings.Contains(err.Error(), "no free memory slots") {
		t.Errorf("Reconfigure with QEMU refusing = %v, want QEMU's reason", err)
	}
	if got := fake.CommandNames(); !slices.Contains(got, "object-del") {
		t.Errorf("after a refused device_add QEMU got %v, want object-del", got)
	}
	if got := e.launch.limit("grow"); got != 256 {
		t.Errorf("memory limit after a failed hot-add: %d MiB, want 256", got)
	}
	if v, _ := e.m.Get("grow"); v.Spec.MemoryMiB != 256 {
		t.Errorf("memory after a failed hot-add: %d MiB, want 256", v.Spec.MemoryMiB)
	}
}

func TestMemoryHotAddSlotsRunOut(t *testing.T) {
	e := newEnv(t)
	e.cfg.HostMemoryMiB = 8192
	e.m = e.newManager(t)
	s := growable("many", 256+20*128)
	e.m.Create(ctx(t), CreateRequest{Datastore: "ds1", Spec: s})
	if _, err := e.m.PowerOn(ctx(t), "many"); err != nil {
		t.Fatal(err)
	}
	mem := 256
	for i := 0; i < 16; i++ {
		mem += 128
		if _, err := e.m.Reconfigure(ctx(t), "many", withMemory(t, e.m, "many", mem)); err != nil {
			t.Fatalf("hot-add %d: %v", i, err)
		}
	}
	_, err := e.m.Reconfigure(ctx(t), "many", withMemory(t, e.m, "many", mem+128))
	if !errors.Is(err, ErrState) || !strings.Contains(err.Error(), "all 16 memory slots") {
		t.Errorf("17th hot-add = %v, want ErrState: all 16 memory slots are used", err)
	}
}

func TestAdoptLearnsHotAddedMemory(t *testing.T) {
	e := newEnv(t)
	e.cfg.HostMemoryMiB = 4096
	e.m = e.newManager(t)
	e.m.Create(ctx(t), CreateRequest{Datastore: "ds1", Spec: growable("keep", 1024)})
	if _, err := e.m.PowerOn(ctx(t), "keep"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Reconfigure(ctx(t), "keep", withMemory(t, e.m, "keep", 512)); err != nil {
		t.Fatal(err)
	}
	// hostd dies right after QEMU took a second DIMM, before it recorded
	// it: QEMU has 640 MiB, the parameter file says 512.
	fake := e.launch.last.vm
	e.m.mu.Lock()
	mon := e.m.vms["keep"].mon
	e.m.mu.Unlock()
	if err := mon.ObjectAdd(ctx(t), "memory-backend-ram", "mem-dimm1", map[string]any{"size": 128 << 20}); err != nil {
		t.Fatal(err)
	}
	if err := mon.DeviceAdd(ctx(t), "pc-dimm", "dimm1", map[string]any{"memdev": "mem-dimm1", "slot": 1}); err != nil {
		t.Fatal(err)
	}
	mon.Close()
	m2 := e.newManager(t)
	m2.Adopt(ctx(t))
	v, _ := m2.Get("keep")
	if v.Status.State != api.VMPoweredOn || v.Status.HotAddedMemoryMiB != 384 || v.Spec.MemoryMiB != 640 {
		t.Fatalf("adopted: %s, %d MiB hot-added, memory %d MiB; want poweredOn, 384, 640", v.Status.State, v.Status.HotAddedMemoryMiB, v.Spec.MemoryMiB)
	}
	if v, _ := e.newManager(t).Get("keep"); v.Spec.MemoryMiB != 640 {
		t.Errorf("parameter file after adoption: memSize %d, want 640", v.Spec.MemoryMiB)
	}
	// The next DIMM is dimm2, in slot 2.
	if _, err := m2.Reconfigure(ctx(t), "keep", withMemory(t, m2, "keep", 768)); err != nil {
		t.Fatal(err)
	}
	if d := fake.Devices(); d["dimm2"] != "pc-dimm" {
		t.Errorf("devices after a hot-add by the new hostd = %v, want dimm2", d)
	}
	m2.PowerOff(ctx(t), "keep")
}

func TestMemorySnapshotNeedsItsMemoryLayout(t *testing.T) {
	e := newEnv(t)
	e.cfg.HostMemoryMiB = 4096
	e.m = e.newManager(t)
	e.m.Create(ctx(t), CreateRequest{Datastore: "ds1", Spec: growable("snap", 768)})
	if _, err := e.m.PowerOn(ctx(t), "snap"); err != nil {
		t.Fatal(err)
	}
	e.launch.last.vm.Handle("human-monitor-command", func(json.RawMessage) (any, error) { return "", nil })
	if _, err := e.m.CreateSnapshot(ctx(t), "snap", "small", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Reconfigure(ctx(t), "snap", withMemory(t, e.m, "snap", 512)); err != nil {
		t.Fatal(err)
	}
	err := e.m.RevertSnapshot(ctx(t), "snap", "small")
	if !errors.Is(err, ErrState) || !strings.Contains(err.Error(), "taken with 256 MiB of memory (0 MiB hot-added)") {
		t.Errorf("revert to a snapshot taken before a hot-add = %v, want ErrState naming its memory", err)
	}
	if _, err := e.m.CreateSnapshot(ctx(t), "snap", "big", ""); err != nil {
		t.Fatal(err)
	}
	if err := e.m.RevertSnapshot(ctx(t), "snap", "big"); err != nil {
		t.Errorf("revert to a snapshot with the same memory = %v", err)
	}
	e.m.PowerOff(ctx(t), "snap")
}
