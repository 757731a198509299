package vswitch_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/hostd/netseam"
	"github.com/flashvisor/flashvisor/hostd/vswitch"
	"github.com/flashvisor/flashvisor/vem"
	vmknic "github.com/flashvisor/flashvisor/vmkernel-nics"
)

// agent validates every config with the VEM's own rules (vem.Validate is
// pure) and answers with the interface of each port, as vemd does.
type agent struct {
	configs []api.SwitchConfig
	err     error
}

var errInvalid = errors.New("fake agent: invalid")

func (a *agent) SetConfig(ctx context.Context, sc api.SwitchConfig) ([]api.PortStatus, error) {
	if a.err != nil {
		return nil, a.err
	}
	c, err := vem.Validate(sc)
	if err != nil {
		return nil, errors.Join(errInvalid, err)
	}
	a.configs = append(a.configs, sc)
	var st []api.PortStatus
	for _, p := range sc.Ports {
		ifn, _ := c.LinkName(p.Name)
		st = append(st, api.PortStatus{Name: p.Name, Kind: p.Kind, Interface: ifn})
	}
	return st, nil
}

func (a *agent) Ports(ctx context.Context) ([]api.PortStatus, error) { return nil, nil }

func (a *agent) CheckConfig(ctx context.Context, sc api.SwitchConfig) error {
	if _, err := vem.Validate(sc); err != nil {
		return errors.Join(errInvalid, err)
	}
	return nil
}

func (a *agent) last() api.SwitchConfig { return a.configs[len(a.configs)-1] }

func open(t *testing.T, a *agent, file string) *vswitch.Switch {
	t.Helper()
	s, err := vswitch.Open(vswitch.Options{
		File: file, Agent: a, IsInvalid: func(err error) bool { return errors.Is(err, errInvalid) },
		Default: func() vswitch.Config {
			return vswitch.Config{
				Uplinks:    []api.Uplink{{NIC: "eth0", Port: "Eth3/1"}},
				PortGroups: []api.PortGroup{{Name: "Management Network", System: true}, {Name: "VM Network"}},
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestFullConfigIsValidForTheVEM(t *testing.T) {
	a := &agent{}
	s := open(t, a, filepath.Join(t.TempDir(), "switch.json"))
	ctx := context.Background()
	steps := []func() error{
		func() error { return s.Sync(ctx) },
		func() error {
			return s.AddPortGroup(ctx, api.PortGroup{Name: "prod (web)", VLAN: 100, MaxMACs: 1, Violation: api.ViolationProtect,
				Ingress: &api.RateLimit{BitsPerSecond: 100e6}, Egress: &api.RateLimit{BitsPerSecond: 50e6}})
		},
		func() error {
			return s.AddPortGroup(ctx, api.PortGroup{Name: "trunk", Trunk: true, AllowedVLANs: "200-210", NativeVLAN: 200})
		},
		func() error { return s.AddPortGroup(ctx, api.PortGroup{Name: "storage", VLAN: 300, System: true}) },
		func() error { _, err := s.AddUplink(ctx, "eth1"); return err },
		func() error {
			_, err := s.AddPortChannel(ctx, api.PortChannel{Name: "Po1", Members: []string{"eth2", "eth3"}, Mode: api.ChannelLACP})
			return err
		},
	}
	for i, f := range steps {
		if err := f(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	for i, vm := range []string{"web01", "web02", "router"} {
		pg := "prod (web)"
		if vm == "router" {
			pg = "trunk"
		}
		tap, err := s.Attach(ctx, vm, 0, pg, "00:50:56:00:00:0"+string(rune('1'+i)))
		if err != nil {
			t.Fatalf("attach %s: %v", vm, err)
		}
		if want := "fvveth" + string(rune('1'+i)); tap != want {
			t.Errorf("attach %s: tap %q, want %q", vm, tap, want)
		}
	}
	sc := a.last()
	got := map[string]api.Port{}
	for _, p := range sc.Ports {
		got[p.Name] = p
	}
	for name, want := range map[string]api.Port{
		"Eth3/1": {Name: "Eth3/1", Kind: api.PortEth, Profile: "fv-uplink", Interface: "eth0", Owner: "eth0"},
		"Eth3/3": {Name: "Eth3/3", Kind: api.PortEth, Interface: "eth2", Owner: "eth2"},
		"Po1":    {Name: "Po1", Kind: api.PortPortChannel, Profile: "fv-uplink", Members: []string{"Eth3/3", "Eth3/4"}, ChannelMode: api.ChannelLACP},
		"Veth3":  {Name: "Veth3", Kind: api.PortVeth, Profile: "trunk", MACs: []string{"00:50:56:00:00:03"}, Owner: "router nic 0"},
	} {
		if !reflect.DeepEqual(got[name], want) {
			t.Errorf("port %s = %+v, want %+v", name, got[name], want)
		}
	}
	var up api.PortProfile
	for _, p := range sc.Profiles {
		if p.Name == "fv-uplink" {
			up = p
		}
	}
	for _, v := range []int{1, 100, 200, 205, 300} {
		set, err := vem.ParseVLANs(up.AllowedVLANs)
		if err != nil || !set.Has(v) {
			t.Errorf("uplink allowed VLANs %q: VLAN %d missing (%v)", up.AllowedVLANs, v, err)
		}
	}
	if up.SystemVLANs != "1,300" {
		t.Errorf("uplink system VLANs %q, want 1,300", up.SystemVLANs)
	}
}

func TestVethLifecycle(t *testing.T) {
	a := &agent{}
	file := filepath.Join(t.TempDir(), "switch.json")
	s := open(t, a, file)
	ctx := context.Background()
	attach := func(vm string, nic int, mac string) string {
		t.Helper()
		tap, err := s.Attach(ctx, vm, nic, "VM Network", mac)
		if err != nil {
			t.Fatalf("attach %s/%d: %v", vm, nic, err)
		}
		return tap
	}
	if tap := attach("a", 0, "00:50:56:00:00:01"); tap != "fvveth1" {
		t.Errorf("a/0 tap %s", tap)
	}
	if tap := attach("b", 0, "00:50:56:00:00:02"); tap != "fvveth2" {
		t.Errorf("b/0 tap %s", tap)
	}
	// Again (power-on after power-off): same vEth.
	if err := s.Detach(ctx, "a", 0); err != nil {
		t.Fatal(err)
	}
	if tap := attach("a", 0, "00:50:56:00:00:01"); tap != "fvveth1" {
		t.Errorf("a/0 again: tap %s", tap)
	}
	// A restarted hostd finds its vEths.
	s2 := open(t, a, file)
	if got := s2.Config().Veths; len(got) != 2 || got[0].Port != "Veth1" || got[1].VM != "b" {
		t.Errorf("reloaded vEths = %+v", got)
	}
	// Deleting the VM frees its vEth; the next vNIC gets the lowest free.
	if err := s2.Release(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	tap, err := s2.Attach(ctx, "c", 0, "VM Network", "00:50:56:00:00:03")
	if err != nil || tap != "fvveth1" {
		t.Errorf("c/0 after release: %q, %v", tap, err)
	}
	// The MAC of another VM's vEth is refused.
	if _, err := s2.Attach(ctx, "d", 0, "VM Network", "00:50:56:00:00:03"); !errors.Is(err, netseam.ErrInvalid) {
		t.Errorf("duplicate MAC: %v", err)
	}
	if _, err := s2.Attach(ctx, "d", 0, "nope", "00:50:56:00:00:04"); !errors.Is(err, netseam.ErrNoPortGroup) {
		t.Errorf("unknown port group: %v", err)
	}
	if err := s2.RemovePortGroup(ctx, "VM Network"); !errors.Is(err, netseam.ErrInUse) {
		t.Errorf("remove used port group: %v", err)
	}
}

func TestRefusedConfigIsNotSaved(t *testing.T) {
	a := &agent{}
	file := filepath.Join(t.TempDir(), "switch.json")
	s := open(t, a, file)
	ctx := context.Background()
	before, _ := os.ReadFile(file)
	// Valid for hostd, invalid for the VEM: a trunk allowed list that does
	// not parse.
	err := s.AddPortGroup(ctx, api.PortGroup{Name: "bad", Trunk: true, AllowedVLANs: "5000"})
	if !errors.Is(err, netseam.ErrInvalid) || !errors.Is(err, vswitch.ErrRefused) {
		t.Fatalf("refused config: %v", err)
	}
	after, _ := os.ReadFile(file)
	if string(before) != string(after) {
		t.Errorf("switch file changed by a refused configuration")
	}
	if len(s.PortGroups()) != 2 {
		t.Errorf("port groups after refusal: %+v", s.PortGroups())
	}
	// An unreachable agent: the change is not taken either.
	a.err = errors.New("connection refused")
	if err := s.AddPortGroup(ctx, api.PortGroup{Name: "lab", VLAN: 7}); err == nil {
		t.Errorf("change with the agent away succeeded")
	}
	if len(s.PortGroups()) != 2 {
		t.Errorf("port groups after failure: %+v", s.PortGroups())
	}
}

func TestCheck(t *testing.T) {
	for _, tt := range []struct {
		name string
		pg   api.PortGroup
		ok   bool
	}{
		{"plain", api.PortGroup{Name: "VM Network"}, true},
		{"vlan", api.PortGroup{Name: "v", VLAN: 4094}, true},
		{"vlan range", api.PortGroup{Name: "v", VLAN: 4095}, false},
		{"reserved", api.PortGroup{Name: "fv-uplink"}, false},
		{"trunk with access vlan", api.PortGroup{Name: "t", Trunk: true, VLAN: 5}, false},
		{"allowed without trunk", api.PortGroup{Name: "t", AllowedVLANs: "5"}, false},
		{"violation without max", api.PortGroup{Name: "p", Violation: api.ViolationProtect}, false},
		{"max macs", api.PortGroup{Name: "p", MaxMACs: 65}, false},
		{"rate", api.PortGroup{Name: "r", Ingress: &api.RateLimit{BitsPerSecond: 10}}, false},
		{"bad name", api.PortGroup{Name: "a/b"}, false},
	} {
		err := vswitch.CheckPortGroup(tt.pg)
		if (err == nil) != tt.ok {
			t.Errorf("%s: err = %v", tt.name, err)
		}
		if err != nil && !errors.Is(err, netseam.ErrInvalid) {
			t.Errorf("%s: %v is not ErrInvalid", tt.name, err)
		}
	}
	c := vswitch.Config{PortGroups: []api.PortGroup{{Name: "VM Network"}, {Name: "VM_Network"}}}
	if err := c.Check(); err == nil {
		t.Errorf("port groups with one profile name accepted")
	}
}

func TestCorruptFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "switch.json")
	os.WriteFile(file, []byte(`{"version":1,"uplinks":[{"nic":"eth0","port":"Eth9/1"}]}`), 0o644)
	if _, err := vswitch.Open(vswitch.Options{File: file, Agent: &agent{}}); !errors.Is(err, netseam.ErrCorrupt) {
		t.Errorf("corrupt file: %v", err)
	}
}

// vmknics records what the switch asks of the vmknic manager.
type vmknics struct {
	applied [][]api.VMKNIC
	err     error
}

func (v *vmknics) Apply(ctx context.Context, specs []api.VMKNIC) error {
	if v.err != nil {
		return v.err
	}
	v.applied = append(v.applied, specs)
	return nil
}

func (v *vmknics) Status(ctx context.Context) ([]api.VMKNICStatus, error) { return nil, nil }

func (v *vmknics) last() []api.VMKNIC { return v.applied[len(v.applied)-1] }

func openMgmt(t *testing.T, a *agent, k *vmknics, file string, within time.Duration, rolled chan<- string) *vswitch.Switch {
	t.Helper()
	s, err := vswitch.Open(vswitch.Options{
		File: file, Agent: a, VMKNICs: k, IsInvalid: func(err error) bool { return errors.Is(err, errInvalid) },
		Host: vmknic.Host{UUID: "4c4c4544-0000-1000-8000-000000000001"}, ConfirmWithin: within,
		Default: func() vswitch.Config {
			return vswitch.Config{
				Uplinks:    []api.Uplink{{NIC: "eth0", Port: "Eth3/1"}},
				PortGroups: []api.PortGroup{{Name: "Management Network", System: true}, {Name: "VM Network"}},
				VMKNICs: []api.VMKNIC{{Name: "vswif0", PortGroup: "Management Network", MAC: "52:54:00:12:34:56",
					IPv4: api.VMKIPv4{Mode: api.VMKIPv4DHCP}, Services: []string{api.VMKServiceManagement}}},
			}
		},
		OnRollback: func(ch api.NetworkChange, reason string) { rolled <- ch.ID },
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVMKNICsAndManagementGuard(t *testing.T) {
	a, k := &agent{}, &vmknics{}
	file := filepath.Join(t.TempDir(), "switch.json")
	rolled := make(chan string, 4)
	s := openMgmt(t, a, k, file, 200*time.Millisecond, rolled)
	ctx := context.Background()
	select {
	case <-s.Ready():
		t.Fatal("Ready before the agent took the configuration")
	default:
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Ready():
	default:
		t.Fatal("not Ready after a successful sync")
	}
	// vswif0 is a vEth on the management port group, its switch end the
	// veth the vmknic manager made, its MAC the uplink's burned-in one.
	var vswif api.Port
	for _, p := range a.last().Ports {
		if p.Owner == "vswif0" {
			vswif = p
		}
	}
	if vswif.Name != "Veth1" || vswif.Interface != vmknic.SwitchportName("vswif0") || vswif.Profile != "Management_Network" || vswif.MACs[0] != "52:54:00:12:34:56" {
		t.Errorf("vswif0's port = %+v", vswif)
	}
	if got := k.last(); len(got) != 1 || got[0].Name != "vswif0" {
		t.Errorf("vmknics applied = %+v", got)
	}

	// A vmknic that is not management: applied at once, MAC generated.
	ch, err := s.SetVMKNIC(ctx, api.VMKNIC{Name: "vmk1", PortGroup: "VM Network", IPv4: api.VMKIPv4{Mode: api.VMKIPv4Static, Address: "192.168.77.1/24"}}, true)
	if err != nil || ch != nil {
		t.Fatalf("add vmk1 = %+v, %v", ch, err)
	}
	if v := s.Config().VMKNICs; len(v) != 2 || v[1].MAC == "" {
		t.Errorf("vmknics = %+v", v)
	}
	if _, err := s.SetVMKNIC(ctx, api.VMKNIC{Name: "vmk1", PortGroup: "VM Network", IPv4: api.VMKIPv4{Mode: api.VMKIPv4DHCP}}, true); !errors.Is(err, netseam.ErrExists) {
		t.Errorf("add vmk1 again: %v", err)
	}
	if err := s.RemovePortGroup(ctx, "VM Network"); !errors.Is(err, netseam.ErrInUse) {
		t.Errorf("remove the port group of vmk1: %v", err)
	}

	// A management change is guarded: not saved until confirmed.
	saved, _ := os.ReadFile(file)
	ch, err = s.SetVMKNIC(ctx, api.VMKNIC{Name: "vswif0", PortGroup: "Management Network", IPv4: api.VMKIPv4{Mode: api.VMKIPv4Static, Address: "10.9.9.9/24"}, Services: []string{api.VMKServiceManagement}}, false)
	if err != nil || ch == nil {
		t.Fatalf("guarded change = %+v, %v", ch, err)
	}
	if got := k.last()[0]; got.IPv4.Address != "10.9.9.9/24" || got.MAC != "52:54:00:12:34:56" {
		t.Errorf("vswif0 during the change = %+v (the MAC must be kept)", got)
	}
	if now, _ := os.ReadFile(file); string(now) != string(saved) {
		t.Errorf("an unconfirmed change was saved")
	}
	if _, err := s.SetVMKNIC(ctx, api.VMKNIC{Name: "vswif0", PortGroup: "Management Network", IPv4: api.VMKIPv4{Mode: api.VMKIPv4DHCP}, Services: []string{api.VMKServiceManagement}}, false); !errors.Is(err, vswitch.ErrChangePending) {
		t.Errorf("second guarded change: %v", err)
	}
	// Unguarded changes go on meanwhile, and survive the rollback.
	if _, err := s.Attach(ctx, "web01", 0, "VM Network", "00:50:56:00:00:01"); err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-rolled:
		if id != ch.ID {
			t.Errorf("rolled back %s, want %s", id, ch.ID)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no rollback")
	}
	if got := k.last()[0]; got.IPv4.Mode != api.VMKIPv4DHCP {
		t.Errorf("vswif0 after rollback = %+v", got)
	}
	if !slices.ContainsFunc(s.Config().Veths, func(v api.VethAssignment) bool { return v.VM == "web01" }) {
		t.Errorf("the vNIC attached during the pending change was lost by the rollback")
	}
	if err := s.Confirm(ch.ID); !errors.Is(err, netseam.ErrNotFound) {
		t.Errorf("confirm after rollback: %v", err)
	}

	// Confirmed in time: kept and saved.
	ch, err = s.UpdatePortGroup(ctx, api.PortGroup{Name: "Management Network", VLAN: 10, System: true})
	if err != nil || ch == nil {
		t.Fatalf("management VLAN change = %+v, %v", ch, err)
	}
	if err := s.Confirm(ch.ID); err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-rolled:
		t.Errorf("confirmed change %s rolled back", id)
	case <-time.After(400 * time.Millisecond):
	}
	s2 := openMgmt(t, a, k, file, time.Minute, rolled)
	if pg := s2.PortGroups()[0]; pg.Name != "Management Network" || pg.VLAN != 10 {
		t.Errorf("after restart: %+v", pg)
	}
	// A VM port group change is not guarded.
	if ch, err := s2.UpdatePortGroup(ctx, api.PortGroup{Name: "VM Network", VLAN: 20}); err != nil || ch != nil {
		t.Errorf("VM port group change = %+v, %v", ch, err)
	}
}

func TestDeferredGuardedChange(t *testing.T) {
	a, k := &agent{}, &vmknics{}
	rolled := make(chan string, 4)
	s, err := vswitch.Open(vswitch.Options{
		File: filepath.Join(t.TempDir(), "switch.json"), Agent: a, VMKNICs: k,
		IsInvalid: func(err error) bool { return errors.Is(err, errInvalid) },
		Host:      vmknic.Host{UUID: "4c4c4544-0000-1000-8000-000000000001"}, ConfirmWithin: time.Minute, ApplyDelay: 100 * time.Millisecond,
		Default: func() vswitch.Config {
			return vswitch.Config{
				Uplinks:    []api.Uplink{{NIC: "eth0", Port: "Eth3/1"}},
				PortGroups: []api.PortGroup{{Name: "Management Network"}, {Name: "VM Network"}},
				VMKNICs: []api.VMKNIC{{Name: "vswif0", PortGroup: "Management Network", MAC: "52:54:00:12:34:56",
					IPv4: api.VMKIPv4{Mode: api.VMKIPv4DHCP}, Services: []string{api.VMKServiceManagement}}},
			}
		},
		OnRollback: func(ch api.NetworkChange, reason string) { rolled <- reason },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	n := len(k.applied)
	ch, err := s.SetVMKNIC(ctx, api.VMKNIC{Name: "vswif0", PortGroup: "Management Network", IPv4: api.VMKIPv4{Mode: api.VMKIPv4Static, Address: "10.9.9.9/24"}, Services: []string{api.VMKServiceManagement}}, false)
	if err != nil || ch == nil {
		t.Fatalf("guarded change = %+v, %v", ch, err)
	}
	if len(k.applied) != n {
		t.Errorf("the change was applied before the call returned")
	}
	// A vNIC attached before the change is applied is kept by it.
	if _, err := s.Attach(ctx, "web01", 0, "VM Network", "00:50:56:00:00:01"); err != nil {
		t.Fatal(err)
	}
	// Confirm waits for the change to be applied.
	if err := s.Confirm(ch.ID); err != nil {
		t.Fatal(err)
	}
	if got := k.last()[0]; got.IPv4.Address != "10.9.9.9/24" {
		t.Errorf("vswif0 after the deferred change = %+v", got)
	}
	if !slices.ContainsFunc(s.Config().Veths, func(v api.VethAssignment) bool { return v.VM == "web01" }) {
		t.Errorf("the deferred change lost the vNIC attached meanwhile")
	}
	// One the VEM would refuse is refused at once.
	if _, err := s.UpdatePortGroup(ctx, api.PortGroup{Name: "Management Network", Trunk: true, AllowedVLANs: "5000"}); err == nil {
		t.Errorf("an invalid guarded change was accepted")
	}
	select {
	case r := <-rolled:
		t.Errorf("unexpected rollback: %s", r)
	default:
	}
}
