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
	"strings"
	"sync"
	"testing"
	"time"

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
	mu    sync.Mutex
	procs map[int]*fakeQEMU
	next  int
	last  *fakeQEMU
}

func (f *fakeLauncher) Launch(ctx context.Context, ls LaunchSpec) (Process, error) {
	v := qmptest.NewVM()
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
