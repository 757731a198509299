package hostd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/api/client"
	"github.com/flashvisor/flashvisor/hostd/console"
	"github.com/flashvisor/flashvisor/hostd/netseam"
	"github.com/flashvisor/flashvisor/hostd/vm"
)

// fakePNG is what the fake's Screendump answers: a PNG signature.
var fakePNG = []byte("\x89PNG\r\n\x1a\nfake")

// fakeVMs is a VMs that keeps VMs in memory with the power-state rules of
// the real manager, and records calls. fail[method] makes that method
// return the error (wrapped) instead of acting.
type fakeVMs struct {
	mu          sync.Mutex
	vms         map[string]*api.VM
	snaps       map[string][]api.Snapshot
	registrable map[string]api.VMSpec // "[ds] path" -> the spec found there
	fail        map[string]error
	calls       []string
	timeouts    []time.Duration // Shutdown's
	adopts      int
	autostarts  int
	stopAll     int
	// adoptedAfterMount is MountAll's count when Adopt ran.
	mounted func() int
	adoptAt int
}

func newFakeVMs(vms ...api.VM) *fakeVMs {
	f := &fakeVMs{vms: map[string]*api.VM{}, snaps: map[string][]api.Snapshot{}, registrable: map[string]api.VMSpec{}, fail: map[string]error{}}
	for _, v := range vms {
		f.vms[v.Spec.Name] = &v
	}
	return f
}

func testVM(name, state string) api.VM {
	return api.VM{
		Spec:      api.VMSpec{Name: name, VCPUs: 2, MemoryMiB: 512, Firmware: api.FirmwareBIOS, SerialConsole: true},
		Datastore: "ds1",
		Path:      name + "/" + name + ".fvx",
		Status:    api.VMStatus{State: state},
	}
}

func (f *fakeVMs) setFail(method string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[method] = err
}

func (f *fakeVMs) callList() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// enter records the call and returns the VM, or the injected or not-found
// error. f.mu must be held.
func (f *fakeVMs) enter(method, name string) (*api.VM, error) {
	f.calls = append(f.calls, method+" "+name)
	if err := f.fail[method]; err != nil {
		return nil, fmt.Errorf("%s %s: %w", strings.ToLower(method), name, err)
	}
	v, ok := f.vms[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", vm.ErrNotFound, name)
	}
	return v, nil
}

func (f *fakeVMs) List() []api.VM {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := []api.VM{}
	for _, v := range f.vms {
		out = append(out, *v)
	}
	slices.SortFunc(out, func(a, b api.VM) int { return strings.Compare(a.Spec.Name, b.Spec.Name) })
	return out
}

func (f *fakeVMs) Get(name string) (api.VM, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.vms[name]
	if !ok {
		return api.VM{}, fmt.Errorf("%w: %q", vm.ErrNotFound, name)
	}
	return *v, nil
}

func (f *fakeVMs) Create(ctx context.Context, req vm.CreateRequest) (api.VM, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "Create "+req.Spec.Name+" on "+req.Datastore)
	if err := f.fail["Create"]; err != nil {
		return api.VM{}, fmt.Errorf("create %s: %w", req.Spec.Name, err)
	}
	if _, ok := f.vms[req.Spec.Name]; ok {
		return api.VM{}, fmt.Errorf("%w: %q", vm.ErrExists, req.Spec.Name)
	}
	v := api.VM{Spec: req.Spec, Datastore: req.Datastore, Path: req.Spec.Name + "/" + req.Spec.Name + ".fvx", Status: api.VMStatus{State: api.VMPoweredOff}}
	f.vms[req.Spec.Name] = &v
	return v, nil
}

func (f *fakeVMs) Register(ctx context.Context, datastore, p string) (api.VM, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "Register ["+datastore+"] "+p)
	spec, ok := f.registrable["["+datastore+"] "+p]
	if !ok {
		return api.VM{}, fmt.Errorf("register [%s] %s: %w", datastore, p, vm.ErrNotFound)
	}
	if _, ok := f.vms[spec.Name]; ok {
		return api.VM{}, fmt.Errorf("%w: %q", vm.ErrExists, spec.Name)
	}
	v := api.VM{Spec: spec, Datastore: datastore, Path: p, Status: api.VMStatus{State: api.VMPoweredOff}}
	f.vms[spec.Name] = &v
	return v, nil
}

// offOnly runs do on a powered-off VM, else fails with vm.ErrState.
func (f *fakeVMs) offOnly(method, name string, do func(*api.VM)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, err := f.enter(method, name)
	if err != nil {
		return err
	}
	if v.Status.State != api.VMPoweredOff {
		return fmt.Errorf("%s %s: %w: it is %s", strings.ToLower(method), name, vm.ErrState, v.Status.State)
	}
	do(v)
	return nil
}

func (f *fakeVMs) Unregister(ctx context.Context, name string) error {
	return f.offOnly("Unregister", name, func(*api.VM) { delete(f.vms, name) })
}

func (f *fakeVMs) Destroy(ctx context.Context, name string) error {
	return f.offOnly("Destroy", name, func(*api.VM) { delete(f.vms, name) })
}

func (f *fakeVMs) Reconfigure(ctx context.Context, name string, spec api.VMSpec) (api.VM, error) {
	var out api.VM
	err := f.offOnly("Reconfigure", name, func(v *api.VM) {
		if spec.Name != name {
			return
		}
		v.Spec = spec
		out = *v
	})
	if err == nil && out.Spec.Name == "" {
		err = fmt.Errorf("%w: renaming %s to %q is not supported", vm.ErrInvalid, name, spec.Name)
	}
	return out, err
}

// transition moves a VM from one of the states in from to state to.
func (f *fakeVMs) transition(method, name, to string, from ...string) (api.VM, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, err := f.enter(method, name)
	if err != nil {
		return api.VM{}, err
	}
	if !slices.Contains(from, v.Status.State) {
		return api.VM{}, fmt.Errorf("%s %s: %w: it is %s", strings.ToLower(method), name, vm.ErrState, v.Status.State)
	}
	v.Status.State = to
	return *v, nil
}

func (f *fakeVMs) PowerOn(ctx context.Context, name string) (api.VM, error) {
	return f.transition("PowerOn", name, api.VMPoweredOn, api.VMPoweredOff, api.VMSuspended, api.VMCrashed)
}

func (f *fakeVMs) PowerOff(ctx context.Context, name string) (api.VM, error) {
	return f.transition("PowerOff", name, api.VMPoweredOff, api.VMPoweredOn, api.VMPaused, api.VMCrashed)
}

func (f *fakeVMs) Shutdown(ctx context.Context, name string, timeout time.Duration) (api.VM, error) {
	f.mu.Lock()
	f.timeouts = append(f.timeouts, timeout)
	f.mu.Unlock()
	return f.transition("Shutdown", name, api.VMPoweredOff, api.VMPoweredOn)
}

func (f *fakeVMs) Reset(ctx context.Context, name string) (api.VM, error) {
	return f.transition("Reset", name, api.VMPoweredOn, api.VMPoweredOn)
}

func (f *fakeVMs) Suspend(ctx context.Context, name string) (api.VM, error) {
	return f.transition("Suspend", name, api.VMSuspended, api.VMPoweredOn)
}

func (f *fakeVMs) Snapshots(name string) ([]api.Snapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.enter("Snapshots", name); err != nil {
		return nil, err
	}
	return slices.Clone(f.snaps[name]), nil
}

func (f *fakeVMs) findSnap(name, snap string) int {
	return slices.IndexFunc(f.snaps[name], func(s api.Snapshot) bool { return s.Name == snap })
}

func (f *fakeVMs) CreateSnapshot(ctx context.Context, name, snap, description string) (api.Snapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, err := f.enter("CreateSnapshot", name)
	if err != nil {
		return api.Snapshot{}, err
	}
	if snap == "" {
		return api.Snapshot{}, fmt.Errorf("%w: snapshot name %q", vm.ErrInvalid, snap)
	}
	if f.findSnap(name, snap) >= 0 {
		return api.Snapshot{}, fmt.Errorf("%w: snapshot %q", vm.ErrExists, snap)
	}
	s := api.Snapshot{Name: snap, Description: description, Created: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), Memory: v.Status.State == api.VMPoweredOn}
	if n := len(f.snaps[name]); n > 0 {
		s.Parent = f.snaps[name][n-1].Name
	}
	f.snaps[name] = append(f.snaps[name], s)
	return s, nil
}

func (f *fakeVMs) RevertSnapshot(ctx context.Context, name, snap string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.enter("RevertSnapshot", name); err != nil {
		return err
	}
	if f.findSnap(name, snap) < 0 {
		return fmt.Errorf("%w: %q", vm.ErrNoSnapshot, snap)
	}
	return nil
}

func (f *fakeVMs) DeleteSnapshot(ctx context.Context, name, snap string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.enter("DeleteSnapshot", name); err != nil {
		return err
	}
	i := f.findSnap(name, snap)
	if i < 0 {
		return fmt.Errorf("%w: %q", vm.ErrNoSnapshot, snap)
	}
	f.snaps[name] = slices.Delete(f.snaps[name], i, i+1)
	return nil
}

func (f *fakeVMs) Screendump(ctx context.Context, name string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, err := f.enter("Screendump", name)
	if err != nil {
		return nil, err
	}
	if v.Status.State != api.VMPoweredOn {
		return nil, fmt.Errorf("screendump %s: %w: it is %s", name, vm.ErrState, v.Status.State)
	}
	return fakePNG, nil
}

func (f *fakeVMs) ConsoleHub(name string) (*console.Hub, error) {
	if _, err := f.Get(name); err != nil {
		return nil, fmt.Errorf("%w: %v", console.ErrNoVM, err)
	}
	return nil, console.ErrNoConsole
}

func (f *fakeVMs) VNCPath(name string) (string, error) {
	if _, err := f.Get(name); err != nil {
		return "", fmt.Errorf("%w: %v", console.ErrNoVM, err)
	}
	return "", console.ErrNoConsole
}

func (f *fakeVMs) Adopt(ctx context.Context) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.adopts++
	if f.mounted != nil {
		f.adoptAt = f.mounted()
	}
}

func (f *fakeVMs) Autostart(ctx context.Context) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.autostarts++
}

func (f *fakeVMs) ShutdownAll(ctx context.Context) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopAll++
}

// counts returns adopts, autostarts and ShutdownAll calls.
func (f *fakeVMs) counts() [3]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return [3]int{f.adopts, f.autostarts, f.stopAll}
}

// fakePortGroups is a PortGroups with netseam's errors: VLANs 0-4094,
// "in-use" is used by a VM, names starting with "fv-" are reserved. The
// uplink and port-channel calls are tested with the real switch
// (network_test.go).
type fakePortGroups struct {
	mu  sync.Mutex
	pgs []api.PortGroup
}

func (f *fakePortGroups) PortGroups() []api.PortGroup {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.pgs)
}

func (f *fakePortGroups) AddPortGroup(ctx context.Context, pg api.PortGroup) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case pg.Name == "" || pg.VLAN < 0 || pg.VLAN > 4094:
		return fmt.Errorf("port group %q: %w: VLAN %d", pg.Name, netseam.ErrInvalid, pg.VLAN)
	case strings.HasPrefix(pg.Name, "fv-"):
		return fmt.Errorf("port group %q: %w: reserved", pg.Name, netseam.ErrInvalid)
	case slices.ContainsFunc(f.pgs, func(p api.PortGroup) bool { return p.Name == pg.Name }):
		return fmt.Errorf("%w: %q", netseam.ErrExists, pg.Name)
	}
	f.pgs = append(f.pgs, pg)
	return nil
}

func (f *fakePortGroups) RemovePortGroup(ctx context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if name == "in-use" {
		return fmt.Errorf("%w: %q is used by web01 ethernet0", netseam.ErrInUse, name)
	}
	if name == "broken" {
		return errors.New("delete bridge: operation not permitted")
	}
	i := slices.IndexFunc(f.pgs, func(p api.PortGroup) bool { return p.Name == name })
	if i < 0 {
		return fmt.Errorf("%w: %q", netseam.ErrNoPortGroup, name)
	}
	f.pgs = slices.Delete(f.pgs, i, i+1)
	return nil
}

func (f *fakePortGroups) UpdatePortGroup(ctx context.Context, pg api.PortGroup) (*api.NetworkChange, error) {
	return nil, errors.New("fake: not implemented")
}
func (f *fakePortGroups) AddUplink(ctx context.Context, nic string) (api.Uplink, error) {
	return api.Uplink{}, errors.New("fake: not implemented")
}
func (f *fakePortGroups) RemoveUplink(ctx context.Context, nic string) (*api.NetworkChange, error) {
	return nil, errors.New("fake: not implemented")
}
func (f *fakePortGroups) AddPortChannel(ctx context.Context, pc api.PortChannel) (*api.NetworkChange, error) {
	return nil, errors.New("fake: not implemented")
}
func (f *fakePortGroups) RemovePortChannel(ctx context.Context, name string) (*api.NetworkChange, error) {
	return nil, errors.New("fake: not implemented")
}
func (f *fakePortGroups) SetVMKNIC(ctx context.Context, k api.VMKNIC, create bool) (*api.NetworkChange, error) {
	return nil, errors.New("fake: not implemented")
}
func (f *fakePortGroups) RemoveVMKNIC(ctx context.Context, name string) (*api.NetworkChange, error) {
	return nil, errors.New("fake: not implemented")
}
func (f *fakePortGroups) VMKNICStatus(ctx context.Context) ([]api.VMKNICStatus, error) {
	return nil, nil
}
func (f *fakePortGroups) Confirm(id string) error { return errors.New("fake: not implemented") }
func (f *fakePortGroups) View(ctx context.Context) (api.SwitchView, error) {
	return api.SwitchView{PortGroups: f.PortGroups()}, nil
}

// startVMs is e.start with OpenVMs answering vms and pgs; it runs what
// Serve runs before serving (mount, then open the VMs) before the test
// server starts.
func (e *env) startVMs(t *testing.T, vms VMs, pgs PortGroups) (*Server, *httptest.Server, *client.Client) {
	t.Helper()
	if e.opts.OpenDatastores == nil {
		e.opts.OpenDatastores = func(string) Datastores { return &fakeDS{} }
	}
	e.opts.OpenVMs = func(string, Datastores, func(kind, target, msg string)) (VMs, PortGroups, error) {
		return vms, pgs, nil
	}
	s, err := New(e.opts)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	s.mountDatastores(t.Context())
	s.startVMs(t.Context())
	ts := httptest.NewUnstartedServer(s.Handler())
	ts.TLS = s.TLSConfig()
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return s, ts, apiClient(t, s, ts, testToken)
}

// waitDone follows a task started by call to its end.
func waitDone(t *testing.T, c *client.Client, what string, call func() (api.Task, error)) api.Task {
	t.Helper()
	tk, err := call()
	if err != nil {
		t.Fatalf("%s = %v, want a task", what, err)
	}
	if tk.ID == "" {
		t.Fatalf("%s = %+v, want a task", what, tk)
	}
	done, err := c.WaitTask(t.Context(), tk.ID)
	if err != nil {
		t.Fatalf("WaitTask(%s) after %s = %v", tk.ID, what, err)
	}
	return done
}

func TestVMLifecycle(t *testing.T) {
	f := newFakeVMs(testVM("web01", api.VMPoweredOn))
	f.registrable["[ds2] old/old.fvx"] = api.VMSpec{Name: "old", VCPUs: 1, MemoryMiB: 256, Firmware: api.FirmwareUEFI}
	e := newEnv(t)
	_, _, c := e.startVMs(t, f, &fakePortGroups{})
	ctx := t.Context()

	list, err := c.VMs(ctx)
	if err != nil {
		t.Fatalf("VMs() = %v", err)
	}
	if diff := cmp.Diff([]api.VM{testVM("web01", api.VMPoweredOn)}, list); diff != "" {
		t.Errorf("VMs() mismatch (-want +got):\n%s", diff)
	}
	got, err := c.VM(ctx, "web01")
	if err != nil || got.Status.State != api.VMPoweredOn || got.Spec.VCPUs != 2 {
		t.Errorf("VM(web01) = %+v, %v, want the powered-on web01", got, err)
	}

	// Create: 202 with a task whose result is the VM.
	spec := api.VMSpec{
		Name: "db01", VCPUs: 4, MemoryMiB: 2048, Firmware: api.FirmwareUEFI,
		SCSIControllers: []api.SCSIController{{Model: api.SCSIVirtio}},
		Disks:           []api.VirtualDisk{{Bus: api.DiskBusSCSI, File: "db01.qcow2", Provisioning: api.ProvisionThin, SizeMiB: 10240}},
		NICs:            []api.NIC{{Model: api.NICVirtio, PortGroup: "VM Network", AddressType: api.MACGenerated}},
		SerialConsole:   true,
	}
	tk, err := c.CreateVM(ctx, api.VMCreateRequest{Datastore: "ds1", Spec: spec})
	if err != nil || tk.Kind != "vm.create" || tk.Target != "db01" {
		t.Fatalf("CreateVM(db01) = %+v, %v, want a vm.create task for db01", tk, err)
	}
	done, err := c.WaitTask(ctx, tk.ID)
	if err != nil || done.State != api.TaskSuccess {
		t.Fatalf("create task = %+v (error %+v), %v, want success", done, done.Error, err)
	}
	var created api.VM
	if err := json.Unmarshal(done.Result, &created); err != nil {
		t.Fatalf("create result %s: %v", done.Result, err)
	}
	want := api.VM{Spec: spec, Datastore: "ds1", Path: "db01/db01.fvx", Status: api.VMStatus{State: api.VMPoweredOff}}
	if diff := cmp.Diff(want, created); diff != "" {
		t.Errorf("create result mismatch (-want +got):\n%s", diff)
	}
	// A taken name is refused at once, without a task.
	_, err = c.CreateVM(ctx, api.VMCreateRequest{Datastore: "ds1", Spec: spec})
	apiErr(t, "CreateVM(db01 again)", err, 409, api.ErrExists, "db01")

	// Reconfigure a powered-off VM; a running one is refused.
	spec.VCPUs = 8
	v, err := c.ReconfigureVM(ctx, "db01", spec)
	if err != nil || v.Spec.VCPUs != 8 {
		t.Errorf("ReconfigureVM(db01) = %+v, %v, want 8 vCPUs", v, err)
	}
	web := testVM("web01", "")
	_, err = c.ReconfigureVM(ctx, "web01", web.Spec)
	apiErr(t, "ReconfigureVM(running web01)", err, 409, api.ErrState)
	_, err = c.ReconfigureVM(ctx, "db01", api.VMSpec{Name: "renamed", VCPUs: 1, MemoryMiB: 64, Firmware: api.FirmwareBIOS})
	apiErr(t, "ReconfigureVM(db01 renamed)", err, 400, api.ErrBadRequest, "renaming")

	// Register and unregister.
	reg, err := c.RegisterVM(ctx, "ds2", "old/old.fvx")
	if err != nil || reg.Spec.Name != "old" || reg.Datastore != "ds2" || reg.Path != "old/old.fvx" {
		t.Errorf("RegisterVM(ds2, old/old.fvx) = %+v, %v, want old", reg, err)
	}
	_, err = c.RegisterVM(ctx, "ds2", "old/old.fvx")
	apiErr(t, "RegisterVM(old again)", err, 409, api.ErrExists)
	_, err = c.RegisterVM(ctx, "ds2", "nope/nope.fvx")
	apiErr(t, "RegisterVM(nope)", err, 404, api.ErrNotFound)
	if err := c.UnregisterVM(ctx, "old"); err != nil {
		t.Errorf("UnregisterVM(old) = %v", err)
	}
	apiErr(t, "UnregisterVM(running web01)", c.UnregisterVM(ctx, "web01"), 409, api.ErrState)

	// Destroy: a task; a running VM fails in the task.
	done = waitDone(t, c, "DestroyVM(db01)", func() (api.Task, error) { return c.DestroyVM(ctx, "db01") })
	if done.State != api.TaskSuccess || done.Kind != "vm.destroy" || len(done.Result) != 0 {
		t.Errorf("destroy task = %+v (error %+v), want success without a result", done, done.Error)
	}
	done = waitDone(t, c, "DestroyVM(web01)", func() (api.Task, error) { return c.DestroyVM(ctx, "web01") })
	taskErr(t, "destroy of a running VM", done, api.ErrState, "poweredOn")

	list, err = c.VMs(ctx)
	if err != nil || len(list) != 1 || list[0].Spec.Name != "web01" {
		t.Errorf("VMs() at the end = %+v, %v, want only web01", list, err)
	}
	wantCalls := []string{
		"Create db01 on ds1", "Reconfigure db01", "Reconfigure web01", "Reconfigure db01",
		"Register [ds2] old/old.fvx", "Register [ds2] old/old.fvx", "Register [ds2] nope/nope.fvx",
		"Unregister old", "Unregister web01", "Destroy db01", "Destroy web01",
	}
	if diff := cmp.Diff(wantCalls, f.callList()); diff != "" {
		t.Errorf("calls to the VM manager (-want +got):\n%s", diff)
	}
}

func TestVMListEmpty(t *testing.T) {
	e := newEnv(t)
	_, ts, _ := e.startVMs(t, newFakeVMs(), &fakePortGroups{})
	for _, p := range []string{"/api/v1/vms", "/api/v1/portgroups"} {
		resp, b := do(t, ts, ts.URL, "GET", p, testToken, "")
		if resp.StatusCode != 200 || strings.TrimSpace(string(b)) != "[]" {
			t.Errorf("GET %s with none = %d %s, want 200 []", p, resp.StatusCode, b)
		}
	}
}

func TestVMBodies(t *testing.T) {
	e := newEnv(t)
	f := newFakeVMs(testVM("web01", api.VMPoweredOff))
	_, ts, _ := e.startVMs(t, f, &fakePortGroups{})
	okSpec := `{"name":"db01","vcpus":1,"memory_mib":512,"firmware":"bios","serial_console":true,"vnc_console":false,"autostart":{"enabled":false}}`
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		code                     string
		msg                      []string // in the error message
	}{
		{"create ok", "POST", "/api/v1/vms", `{"datastore":"ds1","spec":` + okSpec + `}`, 202, "", nil},
		{"create malformed", "POST", "/api/v1/vms", `{"datastore":`, 400, api.ErrBadRequest, []string{"malformed JSON"}},
		{"create empty", "POST", "/api/v1/vms", ``, 400, api.ErrBadRequest, []string{"empty"}},
		{"create unknown field", "POST", "/api/v1/vms", `{"datastore":"ds1","spec":` + okSpec + `,"host":"x"}`, 400, api.ErrBadRequest, []string{`unknown field "host"`}},
		{"create unknown spec field", "POST", "/api/v1/vms", `{"datastore":"ds1","spec":{"name":"db01","cpus":2}}`, 400, api.ErrBadRequest, []string{`unknown field "cpus"`}},
		{"create trailing data", "POST", "/api/v1/vms", `{"datastore":"ds1","spec":` + okSpec + `}{}`, 400, api.ErrBadRequest, []string{"after the object"}},
		{"create wrong type", "POST", "/api/v1/vms", `{"datastore":"ds1","spec":{"name":"db01","vcpus":"two"}}`, 400, api.ErrBadRequest, nil},
		// vmconfig's messages name the parameter file keys.
		{"create invalid spec", "POST", "/api/v1/vms", `{"datastore":"ds1","spec":{"name":"db01","vcpus":0,"memory_mib":512,"firmware":"bios"}}`,
			400, api.ErrBadRequest, []string{"numvcpus", "must be 1-64"}},
		{"create several problems", "POST", "/api/v1/vms", `{"datastore":"ds1","spec":{"name":"db01","vcpus":1,"memory_mib":1,"firmware":"coreboot"}}`,
			400, api.ErrBadRequest, []string{"memSize", "firmware"}},
		{"create bad name", "POST", "/api/v1/vms", `{"datastore":"ds1","spec":{"name":"../etc","vcpus":1,"memory_mib":512,"firmware":"bios"}}`,
			400, api.ErrBadRequest, []string{"displayName"}},
		{"create taken name", "POST", "/api/v1/vms", `{"datastore":"ds1","spec":` + strings.Replace(okSpec, "db01", "web01", 1) + `}`, 409, api.ErrExists, []string{"web01"}},
		{"create oversized", "POST", "/api/v1/vms", `{"datastore":"` + strings.Repeat("a", MaxBodyBytes) + `"}`, 413, api.ErrBodyTooLarge, nil},
		{"register unknown field", "POST", "/api/v1/vms/register", `{"datastore":"ds1","path":"a/a.fvx","force":true}`, 400, api.ErrBadRequest, nil},
		{"register null", "POST", "/api/v1/vms/register", `null`, 400, api.ErrBadRequest, []string{"datastore and path are required"}},
		{"register no path", "POST", "/api/v1/vms/register", `{"datastore":"ds1"}`, 400, api.ErrBadRequest, []string{"datastore and path are required"}},
		{"create no datastore", "POST", "/api/v1/vms", `{"spec":` + okSpec + `}`, 400, api.ErrBadRequest, []string{"datastore is required"}},
		{"reconfigure unknown field", "PUT", "/api/v1/vms/web01", `{"name":"web01","ram":1}`, 400, api.ErrBadRequest, []string{`unknown field "ram"`}},
		{"reconfigure ok", "PUT", "/api/v1/vms/web01", okSpec[:9] + "web01" + okSpec[13:], 200, "", nil},
		{"snapshot unknown field", "POST", "/api/v1/vms/web01/snapshots", `{"name":"s1","memory":true}`, 400, api.ErrBadRequest, nil},
		{"snapshot malformed", "POST", "/api/v1/vms/web01/snapshots", `[]`, 400, api.ErrBadRequest, nil},
		{"bad VM name", "GET", "/api/v1/vms/-web", "", 400, api.ErrBadRequest, []string{"letter or digit"}},
		{"bad VM name in power", "POST", "/api/v1/vms/a%2Fb/power/on", "", 400, api.ErrBadRequest, nil},
		{"VM name too long", "DELETE", "/api/v1/vms/" + strings.Repeat("a", 81), "", 400, api.ErrBadRequest, []string{"1-80"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := do(t, ts, ts.URL, tc.method, tc.path, testToken, tc.body)
			if resp.StatusCode != tc.status {
				t.Fatalf("%s %s %s: status = %d, want %d (body %s)", tc.method, tc.path, tc.body, resp.StatusCode, tc.status, b)
			}
			if tc.code == "" {
				return
			}
			e := decodeError(t, b)
			if e.Code != tc.code {
				t.Errorf("code = %q, want %q", e.Code, tc.code)
			}
			for _, m := range tc.msg {
				if !strings.Contains(e.Message, m) {
					t.Errorf("message %q lacks %q", e.Message, m)
				}
			}
		})
	}
	// Refused bodies never reach the manager.
	for _, c := range f.callList() {
		if strings.HasPrefix(c, "Create") && c != "Create db01 on ds1" {
			t.Errorf("the manager was called: %q", c)
		}
	}
}

func TestVMNotFound(t *testing.T) {
	e := newEnv(t)
	f := newFakeVMs()
	_, ts, c := e.startVMs(t, f, &fakePortGroups{})
	const p = "/api/v1/vms/nope"
	// Answered at once.
	for _, tc := range []struct{ method, path, body string }{
		{"GET", p, ""},
		{"PUT", p, `{"name":"nope","vcpus":1,"memory_mib":64,"firmware":"bios"}`},
		{"DELETE", p, ""},
		{"POST", p + "/unregister", ""},
		{"POST", p + "/power/on", ""},
		{"POST", p + "/power/shutdown?timeout=10s", ""},
		{"GET", p + "/snapshots", ""},
		{"GET", p + "/screenshot", ""},
	} {
		resp, b := do(t, ts, ts.URL, tc.method, tc.path, testToken, tc.body)
		if resp.StatusCode != 404 || decodeError(t, b).Code != api.ErrNotFound {
			t.Errorf("%s %s = %d %s, want 404 not_found", tc.method, tc.path, resp.StatusCode, b)
		}
	}
	// The snapshot operations find out in their task.
	for _, tc := range []struct {
		what string
		call func() (api.Task, error)
	}{
		{"CreateSnapshot", func() (api.Task, error) {
			return c.CreateSnapshot(t.Context(), "nope", api.SnapshotRequest{Name: "s1"})
		}},
		{"RevertSnapshot", func() (api.Task, error) { return c.RevertSnapshot(t.Context(), "nope", "s1") }},
		{"DeleteSnapshot", func() (api.Task, error) { return c.DeleteSnapshot(t.Context(), "nope", "s1") }},
	} {
		taskErr(t, tc.what+"(nope)", waitDone(t, c, tc.what, tc.call), api.ErrNotFound, "nope")
	}
	// GET, DELETE and power look the VM up first and never call the
	// operation; the others let the manager say not found.
	want := []string{"Reconfigure nope", "Unregister nope", "Snapshots nope", "Screendump nope", "CreateSnapshot nope", "RevertSnapshot nope", "DeleteSnapshot nope"}
	if diff := cmp.Diff(want, f.callList()); diff != "" {
		t.Errorf("manager calls (-want +got):\n%s", diff)
	}
}

func TestVMPower(t *testing.T) {
	e := newEnv(t)
	f := newFakeVMs(testVM("web01", api.VMPoweredOff))
	_, ts, c := e.startVMs(t, f, &fakePortGroups{})
	ctx := t.Context()
	for _, tc := range []struct {
		op, timeout string
		state       string // after; "" when the task fails
		code        string
	}{
		{"on", "", api.VMPoweredOn, ""},
		{"on", "", "", api.ErrState}, // already on
		{"reset", "", api.VMPoweredOn, ""},
		{"suspend", "", api.VMSuspended, ""},
		{"off", "", "", api.ErrState}, // suspended
		{"on", "", api.VMPoweredOn, ""},
		{"shutdown", "90s", api.VMPoweredOff, ""},
		{"on", "", api.VMPoweredOn, ""},
		{"shutdown", "", api.VMPoweredOff, ""},
		{"shutdown", "1h", "", api.ErrState},
		{"on", "", api.VMPoweredOn, ""},
		{"off", "", api.VMPoweredOff, ""},
	} {
		what := fmt.Sprintf("PowerVM(web01, %s, %q)", tc.op, tc.timeout)
		done := waitDone(t, c, what, func() (api.Task, error) { return c.PowerVM(ctx, "web01", tc.op, tc.timeout) })
		if done.Kind != "vm.power_"+tc.op || done.Target != "web01" {
			t.Errorf("%s task = %s %s, want vm.power_%s web01", what, done.Kind, done.Target, tc.op)
		}
		if tc.code != "" {
			taskErr(t, what, done, tc.code)
			continue
		}
		var v api.VM
		if done.State != api.TaskSuccess || json.Unmarshal(done.Result, &v) != nil || v.Status.State != tc.state {
			t.Errorf("%s = %+v (result %s), want success with state %s", what, done, done.Result, tc.state)
		}
	}
	f.mu.Lock()
	timeouts := slices.Clone(f.timeouts)
	f.mu.Unlock()
	if diff := cmp.Diff([]time.Duration{90 * time.Second, 0, time.Hour}, timeouts); diff != "" {
		t.Errorf("Shutdown timeouts (-want +got):\n%s", diff)
	}

	// Refused at once, without a task.
	n := len(f.callList())
	for _, tc := range []struct {
		path   string
		status int
		code   string
	}{
		{"/api/v1/vms/web01/power/explode", 404, api.ErrNotFound},
		{"/api/v1/vms/web01/power/ON", 404, api.ErrNotFound},
		{"/api/v1/vms/web01/power/shutdown?timeout=soon", 400, api.ErrBadRequest},
		{"/api/v1/vms/web01/power/shutdown?timeout=0s", 400, api.ErrBadRequest},
		{"/api/v1/vms/web01/power/shutdown?timeout=-5s", 400, api.ErrBadRequest},
		{"/api/v1/vms/web01/power/shutdown?timeout=61m", 400, api.ErrBadRequest},
		{"/api/v1/vms/web01/power/shutdown?timeout=120", 400, api.ErrBadRequest},
	} {
		resp, b := do(t, ts, ts.URL, "POST", tc.path, testToken, "")
		if resp.StatusCode != tc.status || decodeError(t, b).Code != tc.code {
			t.Errorf("POST %s = %d %s, want %d %s", tc.path, resp.StatusCode, b, tc.status, tc.code)
		}
	}
	if calls := f.callList(); len(calls) != n {
		t.Errorf("refused power requests reached the manager: %q", calls[n:])
	}
	resp, b := do(t, ts, ts.URL, "GET", "/api/v1/vms/web01/power/on", testToken, "")
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET power/on = %d %s (Allow %q), want 405 with Allow: POST", resp.StatusCode, b, resp.Header.Get("Allow"))
	}
}

// TestVMErrorCodes checks each VM manager error's status and code, both
// answered at once (reconfigure) and from a task (power on).
func TestVMErrorCodes(t *testing.T) {
	e := newEnv(t)
	f := newFakeVMs(testVM("web01", api.VMPoweredOff))
	_, _, c := e.startVMs(t, f, &fakePortGroups{})
	ctx := t.Context()
	for _, tc := range []struct {
		err    error
		status int
		code   string
	}{
		{vm.ErrState, 409, api.ErrState},
		{vm.ErrAdmission, 409, api.ErrAdmission},
		{vm.ErrNoKVM, 409, api.ErrNoKVM},
		{vm.ErrExists, 409, api.ErrExists},
		{vm.ErrConflict, 409, api.ErrConflict},
		{vm.ErrInvalid, 400, api.ErrBadRequest},
		{vm.ErrNotFound, 404, api.ErrNotFound},
		{vm.ErrNoSnapshot, 404, api.ErrNotFound},
		{errors.New("qemu: exec: no such file"), 500, api.ErrInternal},
	} {
		f.setFail("Reconfigure", tc.err)
		f.setFail("PowerOn", tc.err)
		_, err := c.ReconfigureVM(ctx, "web01", testVM("web01", "").Spec)
		apiErr(t, fmt.Sprintf("ReconfigureVM failing with %v", tc.err), err, tc.status, tc.code, "reconfigure web01", tc.err.Error())
		done := waitDone(t, c, "PowerVM(on)", func() (api.Task, error) { return c.PowerVM(ctx, "web01", "on", "") })
		taskErr(t, fmt.Sprintf("power on failing with %v", tc.err), done, tc.code, "poweron web01", tc.err.Error())
	}
}

func TestClassifyVM(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		code   string
	}{
		{fmt.Errorf("power on web01: %w: 4096 MiB over the limit", vm.ErrAdmission), 409, api.ErrAdmission},
		{fmt.Errorf("power on web01: %w", vm.ErrNoKVM), 409, api.ErrNoKVM},
		{fmt.Errorf("x: %w", vm.ErrState), 409, api.ErrState},
		{fmt.Errorf("x: %w", vm.ErrExists), 409, api.ErrExists},
		{fmt.Errorf("x: %w", vm.ErrConflict), 409, api.ErrConflict},
		{fmt.Errorf("x: %w", vm.ErrInvalid), 400, api.ErrBadRequest},
		{fmt.Errorf("x: %w", vm.ErrNotFound), 404, api.ErrNotFound},
		{fmt.Errorf("x: %w", vm.ErrNoSnapshot), 404, api.ErrNotFound},
		{context.DeadlineExceeded, 500, api.ErrInternal},
	} {
		got := classifyVM(tc.err)
		if got.status != tc.status || got.code != tc.code || got.Error() != tc.err.Error() {
			t.Errorf("classifyVM(%v) = %d %s %q, want %d %s", tc.err, got.status, got.code, got.Error(), tc.status, tc.code)
		}
		if !errors.Is(got, tc.err) || classifyVM(got) != got {
			t.Errorf("classifyVM(%v) loses the error or is not idempotent", tc.err)
		}
	}
}

func TestVMSnapshots(t *testing.T) {
	e := newEnv(t)
	f := newFakeVMs(testVM("web01", api.VMPoweredOn))
	_, ts, c := e.startVMs(t, f, &fakePortGroups{})
	ctx := t.Context()

	resp, b := do(t, ts, ts.URL, "GET", "/api/v1/vms/web01/snapshots", testToken, "")
	if resp.StatusCode != 200 || strings.TrimSpace(string(b)) != "[]" {
		t.Errorf("GET snapshots with none = %d %s, want 200 []", resp.StatusCode, b)
	}
	for _, name := range []string{"before-upgrade", "after-upgrade"} {
		done := waitDone(t, c, "CreateSnapshot("+name+")", func() (api.Task, error) {
			return c.CreateSnapshot(ctx, "web01", api.SnapshotRequest{Name: name, Description: "d " + name})
		})
		var s api.Snapshot
		if done.State != api.TaskSuccess || done.Kind != "vm.snapshot_create" || json.Unmarshal(done.Result, &s) != nil || s.Name != name || !s.Memory {
			t.Errorf("snapshot %s task = %+v (result %s), want success with the snapshot", name, done, done.Result)
		}
	}
	done := waitDone(t, c, "CreateSnapshot(again)", func() (api.Task, error) {
		return c.CreateSnapshot(ctx, "web01", api.SnapshotRequest{Name: "after-upgrade"})
	})
	taskErr(t, "snapshot with a taken name", done, api.ErrExists)
	done = waitDone(t, c, "CreateSnapshot(no name)", func() (api.Task, error) {
		return c.CreateSnapshot(ctx, "web01", api.SnapshotRequest{})
	})
	taskErr(t, "snapshot without a name", done, api.ErrBadRequest)

	list, err := c.Snapshots(ctx, "web01")
	want := []api.Snapshot{
		{Name: "before-upgrade", Description: "d before-upgrade", Created: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), Memory: true},
		{Name: "after-upgrade", Description: "d after-upgrade", Created: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), Parent: "before-upgrade", Memory: true},
	}
	if diff := cmp.Diff(want, list); err != nil || diff != "" {
		t.Errorf("Snapshots(web01) = %v (-want +got):\n%s", err, diff)
	}

	done = waitDone(t, c, "RevertSnapshot", func() (api.Task, error) { return c.RevertSnapshot(ctx, "web01", "before-upgrade") })
	if done.State != api.TaskSuccess || done.Kind != "vm.snapshot_revert" {
		t.Errorf("revert task = %+v (error %+v), want success", done, done.Error)
	}
	done = waitDone(t, c, "RevertSnapshot(nope)", func() (api.Task, error) { return c.RevertSnapshot(ctx, "web01", "nope") })
	taskErr(t, "revert to an unknown snapshot", done, api.ErrNotFound, "no such snapshot")
	f.setFail("RevertSnapshot", vm.ErrState)
	done = waitDone(t, c, "RevertSnapshot(state)", func() (api.Task, error) { return c.RevertSnapshot(ctx, "web01", "before-upgrade") })
	taskErr(t, "revert refused by the state", done, api.ErrState)

	done = waitDone(t, c, "DeleteSnapshot", func() (api.Task, error) { return c.DeleteSnapshot(ctx, "web01", "after-upgrade") })
	if done.State != api.TaskSuccess || done.Kind != "vm.snapshot_delete" {
		t.Errorf("delete task = %+v (error %+v), want success", done, done.Error)
	}
	done = waitDone(t, c, "DeleteSnapshot(again)", func() (api.Task, error) { return c.DeleteSnapshot(ctx, "web01", "after-upgrade") })
	taskErr(t, "delete of a deleted snapshot", done, api.ErrNotFound)
	if list, err := c.Snapshots(ctx, "web01"); err != nil || len(list) != 1 {
		t.Errorf("Snapshots(web01) after delete = %+v, %v, want 1", list, err)
	}
}

func TestVMScreenshotAndConsoles(t *testing.T) {
	e := newEnv(t)
	f := newFakeVMs(testVM("web01", api.VMPoweredOn), testVM("db01", api.VMPoweredOff))
	_, ts, c := e.startVMs(t, f, &fakePortGroups{})
	png, err := c.Screenshot(t.Context(), "web01")
	if err != nil || string(png) != string(fakePNG) {
		t.Errorf("Screenshot(web01) = %q, %v, want the PNG", png, err)
	}
	resp, _ := do(t, ts, ts.URL, "GET", "/api/v1/vms/web01/screenshot", testToken, "")
	if got := resp.Header.Get("Content-Type"); got != "image/png" {
		t.Errorf("screenshot Content-Type = %q, want image/png", got)
	}
	_, err = c.Screenshot(t.Context(), "db01")
	apiErr(t, "Screenshot(powered-off db01)", err, 409, api.ErrState)

	for _, tc := range []struct {
		path    string
		upgrade bool
		status  int
		code    string
	}{
		{"/api/v1/vms/web01/console", false, 426, api.ErrBadRequest},
		{"/api/v1/vms/web01/vnc", false, 426, api.ErrBadRequest},
		{"/api/v1/vms/nope/console", true, 404, api.ErrNotFound},
		{"/api/v1/vms/nope/vnc", true, 404, api.ErrNotFound},
		{"/api/v1/vms/db01/console", true, 409, api.ErrConflict},
		{"/api/v1/vms/db01/vnc", true, 409, api.ErrConflict},
		{"/api/v1/vms/web01/console?write=maybe", true, 400, api.ErrBadRequest},
	} {
		req, err := http.NewRequest("GET", ts.URL+tc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+testToken)
		if tc.upgrade {
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", "websocket")
			req.Header.Set("Sec-WebSocket-Version", "13")
			req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		}
		resp, err := ts.Client().Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", tc.path, err)
		}
		var e api.Error
		json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != tc.status || e.Code != tc.code {
			t.Errorf("GET %s (upgrade %v) = %d %+v, want %d %s", tc.path, tc.upgrade, resp.StatusCode, e, tc.status, tc.code)
		}
	}
}

// TestVMsUnavailable: without a VM manager (none configured, or it failed
// to open) every VM and port group route answers 503, the rest still works.
func TestVMsUnavailable(t *testing.T) {
	for name, open := range map[string]OpenVMs{
		"no OpenVMs": nil,
		"OpenVMs fails": func(string, Datastores, func(kind, target, msg string)) (VMs, PortGroups, error) {
			return nil, nil, errors.New("inventory: unexpected end of JSON input")
		},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			e.opts.OpenDatastores = func(string) Datastores { return &fakeDS{} }
			e.opts.OpenVMs = open
			s, err := New(e.opts)
			if err != nil {
				t.Fatal(err)
			}
			s.startVMs(t.Context())
			ts := httptest.NewUnstartedServer(s.Handler())
			ts.TLS = s.TLSConfig()
			ts.StartTLS()
			t.Cleanup(ts.Close)
			routes := append(s.vmRoutes("/api/v1"), s.portGroupRoutes("/api/v1")...)
			for _, r := range routes {
				p := strings.NewReplacer("{name}", "web01", "{op}", "on", "{snap}", "s1").Replace(r.path)
				resp, b := do(t, ts, ts.URL, r.method, p, testToken, "")
				if resp.StatusCode != 503 || decodeError(t, b).Code != api.ErrUnavailable {
					t.Errorf("%s %s without VMs = %d %s, want 503 unavailable", r.method, p, resp.StatusCode, b)
				}
			}
			if resp, b := do(t, ts, ts.URL, "GET", "/api/v1/datastores", testToken, ""); resp.StatusCode != 200 {
				t.Errorf("GET /api/v1/datastores without VMs = %d %s, want 200", resp.StatusCode, b)
			}
			if open != nil && !strings.Contains(e.logBuf.String(), "unexpected end of JSON input") {
				t.Errorf("log lacks OpenVMs' error:\n%s", e.logBuf)
			}
		})
	}
}

// TestServeStartsVMs: Serve opens the VMs after mounting the datastores,
// adopts running VMs, autostarts only on the first start since boot, and
// shuts VMs down on exit only when the host is going down.
func TestServeStartsVMs(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "autostart-done")
	shutdown := filepath.Join(dir, "shutting-down")
	serve := func(hostDown bool) (*fakeVMs, *fakeDS, string) {
		t.Helper()
		e := newEnv(t)
		ds := &fakeDS{}
		f := newFakeVMs()
		var mu sync.Mutex
		f.mounted = func() int { mu.Lock(); defer mu.Unlock(); return ds.mountAlls }
		var gotDir string
		var gotDS Datastores
		e.opts.OpenDatastores = func(string) Datastores { return ds }
		e.opts.OpenVMs = func(stateDir string, d Datastores, publish func(kind, target, msg string)) (VMs, PortGroups, error) {
			gotDir, gotDS = stateDir, d
			publish("vm.test", "web01", "opened")
			return f, &fakePortGroups{}, nil
		}
		e.opts.AutostartMarker = marker
		e.opts.ShutdownMarker = shutdown
		s, err := New(e.opts)
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error, 1)
		go func() { errc <- s.Serve(ctx, ln) }()
		c, err := client.New(client.Options{Addr: ln.Addr().String(), Token: testToken, Fingerprint: s.Fingerprint(), Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return c.Healthz(ctx) == nil })
		if _, err := c.VMs(ctx); err != nil {
			t.Errorf("VMs() once serving = %v", err)
		}
		if hostDown {
			writeFile(t, shutdown, "")
		}
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Serve() = %v", err)
		}
		if gotDir != e.stateDir() || gotDS != ds {
			t.Errorf("OpenVMs got (%q, %v), want (%q, the datastore manager)", gotDir, gotDS, e.stateDir())
		}
		if ev := s.o.Events.Since(0); len(ev) == 0 || ev[0].Kind != "vm.test" {
			t.Errorf("events = %+v, want OpenVMs' publish on the bus", ev)
		}
		return f, ds, marker
	}

	f, _, _ := serve(false)
	waitFor(t, func() bool { return f.counts()[1] == 1 }) // autostart runs in the background
	if got := f.counts(); got != [3]int{1, 1, 0} {
		t.Errorf("first start: adopts, autostarts, shutdowns = %v, want [1 1 0]", got)
	}
	if f.adoptAt != 1 {
		t.Errorf("Adopt ran after %d MountAll calls, want 1 (datastores first)", f.adoptAt)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("autostart marker: %v", err)
	}

	// hostd restarted: no second autostart; the host goes down: VMs stop.
	f, _, _ = serve(true)
	time.Sleep(20 * time.Millisecond)
	if got := f.counts(); got != [3]int{1, 0, 1} {
		t.Errorf("restart then host shutdown: adopts, autostarts, shutdowns = %v, want [1 0 1]", got)
	}
}

func TestPortGroups(t *testing.T) {
	e := newEnv(t)
	pgs := &fakePortGroups{}
	_, ts, c := e.startVMs(t, newFakeVMs(), pgs)
	ctx := t.Context()
	for _, pg := range []api.PortGroup{{Name: "VM Network"}, {Name: "dmz", VLAN: 100, MaxMACs: 1}} {
		if err := c.AddPortGroup(ctx, pg); err != nil {
			t.Errorf("AddPortGroup(%+v) = %v", pg, err)
		}
	}
	resp, b := do(t, ts, ts.URL, "POST", "/api/v1/portgroups", testToken, `{"name":"lab","vlan":7}`)
	var added api.PortGroup
	if resp.StatusCode != 201 || json.Unmarshal(b, &added) != nil || added != (api.PortGroup{Name: "lab", VLAN: 7}) {
		t.Errorf("POST portgroups lab = %d %s, want 201 with the port group", resp.StatusCode, b)
	}
	list, err := c.PortGroups(ctx)
	want := []api.PortGroup{{Name: "VM Network"}, {Name: "dmz", VLAN: 100, MaxMACs: 1}, {Name: "lab", VLAN: 7}}
	if diff := cmp.Diff(want, list); err != nil || diff != "" {
		t.Errorf("PortGroups() = %v (-want +got):\n%s", err, diff)
	}

	apiErr(t, "AddPortGroup(dmz again)", c.AddPortGroup(ctx, api.PortGroup{Name: "dmz"}), 409, api.ErrExists)
	apiErr(t, "AddPortGroup(vlan 4095)", c.AddPortGroup(ctx, api.PortGroup{Name: "x", VLAN: 4095}), 400, api.ErrBadRequest, "invalid")
	apiErr(t, "AddPortGroup(reserved)", c.AddPortGroup(ctx, api.PortGroup{Name: "fv-x"}), 400, api.ErrBadRequest, "reserved")
	for _, body := range []string{`{"name":"x","vlan":1,"mtu":9000}`, `{"name":`, ``, `{"name":"x","vlan":"1"}`} {
		resp, b := do(t, ts, ts.URL, "POST", "/api/v1/portgroups", testToken, body)
		if resp.StatusCode != 400 || decodeError(t, b).Code != api.ErrBadRequest {
			t.Errorf("POST portgroups %s = %d %s, want 400", body, resp.StatusCode, b)
		}
	}

	if err := c.RemovePortGroup(ctx, "lab"); err != nil {
		t.Errorf("RemovePortGroup(lab) = %v", err)
	}
	resp, b = do(t, ts, ts.URL, "DELETE", "/api/v1/portgroups/dmz", testToken, "")
	if resp.StatusCode != 204 || len(b) != 0 {
		t.Errorf("DELETE portgroups/dmz = %d %q, want 204 without a body", resp.StatusCode, b)
	}
	apiErr(t, "RemovePortGroup(lab again)", c.RemovePortGroup(ctx, "lab"), 404, api.ErrNotFound)
	apiErr(t, "RemovePortGroup(in-use)", c.RemovePortGroup(ctx, "in-use"), 409, api.ErrInUse, "web01")
	apiErr(t, "RemovePortGroup(broken)", c.RemovePortGroup(ctx, "broken"), 500, api.ErrInternal, "not permitted")
	// Names with spaces and slashes travel escaped.
	apiErr(t, "RemovePortGroup(a/b)", c.RemovePortGroup(ctx, "a/b"), 404, api.ErrNotFound, `"a/b"`)
	if err := c.RemovePortGroup(ctx, "VM Network"); err != nil {
		t.Errorf("RemovePortGroup(VM Network) = %v", err)
	}
	if list := pgs.PortGroups(); len(list) != 0 {
		t.Errorf("port groups at the end = %+v, want none", list)
	}
}

func TestPortGroupError(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		code   string
	}{
		{fmt.Errorf("x: %w", netseam.ErrNoPortGroup), 404, api.ErrNotFound},
		{fmt.Errorf("x: %w", netseam.ErrExists), 409, api.ErrExists},
		{fmt.Errorf("x: %w", netseam.ErrInUse), 409, api.ErrInUse},
		{fmt.Errorf("x: %w", netseam.ErrInvalid), 400, api.ErrBadRequest},
		{fmt.Errorf("x: %w", netseam.ErrNotFound), 404, api.ErrNotFound},
		{fmt.Errorf("x: %w", netseam.ErrCorrupt), 500, api.ErrInternal},
		{errors.New("netlink: operation not permitted"), 500, api.ErrInternal},
	} {
		w := httptest.NewRecorder()
		portGroupError(w, tc.err)
		var e api.Error
		if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || w.Code != tc.status || e.Code != tc.code || e.Message != tc.err.Error() {
			t.Errorf("portGroupError(%v) = %d %s, want %d %s", tc.err, w.Code, w.Body, tc.status, tc.code)
		}
	}
}

// Autostart waits for the switch: a VM powered on before the VEM agent
// answers cannot attach its vNICs (seen at boot: vem.sock not there yet).
func TestAutostartWaitsForNetwork(t *testing.T) {
	ready := make(chan struct{})
	f := newFakeVMs()
	s := &Server{o: Options{NetworkReady: ready}, vms: f, log: slog.New(slog.DiscardHandler)}
	done := make(chan struct{})
	go func() { s.autostart(t.Context()); close(done) }()
	select {
	case <-done:
		t.Fatal("autostart returned before the network was ready")
	case <-time.After(200 * time.Millisecond):
	}
	if n := f.counts()[1]; n != 0 {
		t.Fatalf("autostart ran %d times before the network was ready", n)
	}
	close(ready)
	<-done
	if n := f.counts()[1]; n != 1 {
		t.Errorf("autostart ran %d times once the network was ready, want 1", n)
	}

	// A switch that never becomes ready delays autostart, not forever.
	f = newFakeVMs()
	s = &Server{o: Options{NetworkReady: make(chan struct{}), AutostartNetworkWait: 50 * time.Millisecond}, vms: f, log: slog.New(slog.DiscardHandler)}
	s.autostart(t.Context())
	if n := f.counts()[1]; n != 1 {
		t.Errorf("autostart ran %d times after the wait ran out, want 1", n)
	}
}
