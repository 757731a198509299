package vem_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/vem"
	"github.com/flashvisor/flashvisor/vem/vemtest"
	"github.com/google/go-cmp/cmp"
)

func vlans(s string) vem.VLANSet {
	v, err := vem.ParseVLANs(s)
	if err != nil {
		panic(err)
	}
	return v
}

func find(t *testing.T, st vem.KernelState, name string) vem.Link {
	t.Helper()
	l, ok := st.Find(name)
	if !ok {
		t.Fatalf("no link %s in %+v", name, st.Links)
	}
	return l
}

func TestDesired(t *testing.T) {
	st := vem.Desired(mustValidate(t, testConfig()), vem.Runtime{})
	br := find(t, st, vem.BridgeName)
	if diff := cmp.Diff(&vem.BridgeOpts{VLANFiltering: true}, br.Bridge); diff != "" || !br.BridgePort.VLANs.Empty() {
		t.Errorf("bridge (-want +got):\n%s self VLANs %s", diff, br.BridgePort.VLANs)
	}
	for _, tc := range []struct {
		link    string
		kind    string
		master  string
		port    *vem.BridgePort
		tcWant  vem.TC
		comment string
	}{
		{"fvveth1", vem.KindTap, vem.BridgeName, &vem.BridgePort{VLANs: vlans("100"), Untagged: vlans("100"), PVID: 100}, vem.TC{DropBPDU: true}, "access"},
		{"fvveth2", vem.KindTap, vem.BridgeName, &vem.BridgePort{VLANs: vlans("100,200-201"), Untagged: vlans("200"), PVID: 200},
			vem.TC{DropBPDU: true, AllowSrc: []string{"52:54:00:00:00:02"}}, "trunk, native 200, port security"},
		{"eth0", vem.KindExternal, vem.BridgeName, &vem.BridgePort{Learning: true, Flood: true, Isolated: true, VLANs: vlans("1,100-300"), Untagged: vlans("1"), PVID: 1}, vem.TC{DropBPDU: true}, "uplink"},
		{"fvpo1", vem.KindBond, vem.BridgeName, &vem.BridgePort{Learning: true, Flood: true, Isolated: true, VLANs: vlans("1,100-300"), Untagged: vlans("1"), PVID: 1}, vem.TC{DropBPDU: true}, "port-channel"},
		{"eth1", vem.KindExternal, "fvpo1", nil, vem.TC{}, "designated member"},
		{"eth2", vem.KindExternal, "fvpo1", nil, vem.TC{DropGroup: true}, "other mac-pinning member"},
	} {
		l := find(t, st, tc.link)
		if l.Kind != tc.kind || l.Master != tc.master || !l.Up {
			t.Errorf("%s (%s): kind %s master %q up %t, want %s %q up", tc.link, tc.comment, l.Kind, l.Master, l.Up, tc.kind, tc.master)
		}
		if diff := cmp.Diff(tc.port, l.BridgePort); diff != "" {
			t.Errorf("%s (%s) bridge port (-want +got):\n%s", tc.link, tc.comment, diff)
		}
		if !l.TC.Equal(tc.tcWant) {
			t.Errorf("%s (%s) tc = %+v, want %+v", tc.link, tc.comment, l.TC, tc.tcWant)
		}
	}
	if got := find(t, st, "fvpo1").Bond; got.Mode != vem.BondXOR || got.HashPolicy != vem.HashVLANSrcMAC {
		t.Errorf("mac-pinning bond = %+v", got)
	}
	want := []vem.FDBEntry{
		{Link: "fvveth1", MAC: "52:54:00:00:00:01", VLAN: 100},
		{Link: "fvveth2", MAC: "52:54:00:00:00:02", VLAN: 100},
		{Link: "fvveth2", MAC: "52:54:00:00:00:02", VLAN: 200},
		{Link: "fvveth2", MAC: "52:54:00:00:00:02", VLAN: 201},
	}
	if diff := cmp.Diff(want, st.FDB); diff != "" {
		t.Errorf("FDB (-want +got):\n%s", diff)
	}
}

func TestDesiredNativeNotAllowedAndShutdown(t *testing.T) {
	sc := testConfig()
	sc.Profiles[1].NativeVLAN = 5 // not in 100,200-201: untagged frames dropped
	sc.Profiles[0].Shutdown = true
	st := vem.Desired(mustValidate(t, sc), vem.Runtime{ErrDisabled: map[string]bool{"Veth2": true}})
	if l := find(t, st, "fvveth2"); l.BridgePort.PVID != 0 || !l.BridgePort.Untagged.Empty() || l.Up {
		t.Errorf("fvveth2 = %+v up %t, want no PVID, nothing untagged, down (err-disabled)", l.BridgePort, l.Up)
	}
	if l := find(t, st, "fvveth1"); l.Up {
		t.Errorf("fvveth1 up, want down (profile shutdown)")
	}
}

func newKernel() *vemtest.Kernel { return vemtest.New("lo", "eth0", "eth1", "eth2", "vmk0") }

func converge(t *testing.T, k *vemtest.Kernel, c *vem.Config) {
	t.Helper()
	plan := vem.Plan(vem.Desired(c, vem.Runtime{}), k.State())
	for _, ch := range plan {
		if err := k.Apply(context.Background(), ch); err != nil {
			t.Fatalf("Apply: %v\nplan: %v", err, plan)
		}
	}
	if again := vem.Plan(vem.Desired(c, vem.Runtime{}), k.State()); len(again) != 0 {
		t.Fatalf("Plan after applying = %v, want empty", again)
	}
}

func TestPlanIdempotent(t *testing.T) {
	k := newKernel()
	converge(t, k, mustValidate(t, testConfig()))
	// The kernel matches: no Po member has bridge settings, links are up.
	st := k.State()
	if l := find(t, st, "eth1"); l.Master != "fvpo1" || l.BridgePort != nil {
		t.Errorf("eth1 = %+v", l)
	}
	if l := find(t, st, "fvveth2"); l.BridgePort.PVID != 200 || l.TCKey == "" {
		t.Errorf("fvveth2 = %+v", l)
	}
}

func TestPlanEmptyConfigFromScratch(t *testing.T) {
	k := newKernel()
	converge(t, k, mustValidate(t, api.SwitchConfig{Module: 3}))
}

func TestPlanOnePortChangeIsMinimal(t *testing.T) {
	k := newKernel()
	sc := testConfig()
	for i := 10; i < 60; i++ {
		sc.Ports = append(sc.Ports, api.Port{Name: "Veth" + itoa(i), Kind: api.PortVeth, Profile: "web",
			MACs: []string{"52:54:00:00:01:" + hex2(i)}})
	}
	converge(t, k, mustValidate(t, sc))
	// Veth20 moves from web (VLAN 100) to a new profile on VLAN 200.
	sc.Profiles = append(sc.Profiles, api.PortProfile{Name: "db", Type: api.ProfileVethernet, Mode: api.ModeAccess, AccessVLAN: 200, Enabled: true})
	for i := range sc.Ports {
		if sc.Ports[i].Name == "Veth20" {
			sc.Ports[i].Profile = "db"
		}
	}
	c := mustValidate(t, sc)
	plan := vem.Plan(vem.Desired(c, vem.Runtime{}), k.State())
	if len(plan) == 0 {
		t.Fatal("Plan = empty, want changes for Veth20")
	}
	for _, ch := range plan {
		if ch.Link.Name != "fvveth20" {
			t.Errorf("Plan touches %s: %s, want only fvveth20", ch.Link.Name, ch)
		}
		if ch.Op == vem.OpDeleteLink || ch.Op == vem.OpSetMaster || ch.Op == vem.OpSetUp {
			t.Errorf("Plan disturbs the port: %s", ch)
		}
	}
	converge(t, k, c)
}

func TestPlanRemovesWhatIsNoLongerWanted(t *testing.T) {
	k := newKernel()
	converge(t, k, mustValidate(t, testConfig()))
	converge(t, k, mustValidate(t, api.SwitchConfig{Module: 3}))
	st := k.State()
	for _, l := range st.Links {
		if l.Master != "" && l.Master != vem.BridgeName {
			t.Errorf("%s still enslaved to %s", l.Name, l.Master)
		}
		if l.Kind == vem.KindTap || l.Kind == vem.KindBond || l.TCKey != "" {
			t.Errorf("left behind: %+v", l)
		}
	}
	if len(st.FDB) != 0 {
		t.Errorf("FDB left behind: %v", st.FDB)
	}
}

func TestPlanChannelModeRecreatesBondOnly(t *testing.T) {
	k := newKernel()
	sc := testConfig()
	converge(t, k, mustValidate(t, sc))
	sc.Ports[5].ChannelMode = api.ChannelLACP
	c := mustValidate(t, sc)
	for _, ch := range vem.Plan(vem.Desired(c, vem.Runtime{}), k.State()) {
		if !slices.Contains([]string{"fvpo1", "eth1", "eth2"}, ch.Link.Name) {
			t.Errorf("Plan touches %s: %s", ch.Link.Name, ch)
		}
	}
	converge(t, k, c)
}

// The agent keeps the last applied config; a fresh agent (a restart, a
// reboot) restores it and, on an unchanged kernel, changes nothing.
func TestAgentRestartChangesNothing(t *testing.T) {
	ctx := context.Background()
	k := newKernel()
	store := &vem.Store{Path: filepath.Join(t.TempDir(), "vem.json")}
	a, err := vem.New(vem.Options{Kernel: k, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Restore(ctx); !errors.Is(err, vem.ErrNoState) {
		t.Fatalf("Restore on first boot = %v, want ErrNoState", err)
	}
	if err := a.SetConfig(ctx, testConfig()); err != nil {
		t.Fatal(err)
	}
	n := len(k.Applied)
	b, _ := vem.New(vem.Options{Kernel: k, Store: store})
	if err := b.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	if len(k.Applied) != n {
		t.Errorf("restarted agent applied %v, want nothing", k.Applied[n:])
	}
	// After a "reboot" (empty kernel), a fresh agent restores every port.
	k2 := newKernel()
	c, _ := vem.New(vem.Options{Kernel: k2, Store: store})
	if err := c.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(k.State(), k2.State()); diff != "" {
		t.Errorf("restored kernel differs (-before +after):\n%s", diff)
	}
	st, err := c.Status(ctx)
	if err != nil || len(st) != 6 {
		t.Fatalf("Status = %v, %v", st, err)
	}
}

func TestAgentInvalidConfigKeepsProgramming(t *testing.T) {
	ctx := context.Background()
	k := newKernel()
	a, _ := vem.New(vem.Options{Kernel: k})
	if err := a.SetConfig(ctx, testConfig()); err != nil {
		t.Fatal(err)
	}
	before := k.State()
	bad := testConfig()
	bad.Ports[0].Profile = "uplink"
	if err := a.SetConfig(ctx, bad); !errors.Is(err, vem.ErrInvalid) {
		t.Fatalf("SetConfig(bad) = %v, want ErrInvalid", err)
	}
	if diff := cmp.Diff(before, k.State()); diff != "" {
		t.Errorf("kernel changed (-before +after):\n%s", diff)
	}
}

func TestAgentErrDisablesOnViolation(t *testing.T) {
	ctx := context.Background()
	k := &violating{Kernel: newKernel()}
	sc := testConfig()
	sc.Profiles[1].PortSecurity.Violation = api.ViolationShutdown
	a, _ := vem.New(vem.Options{Kernel: k})
	if err := a.SetConfig(ctx, sc); err != nil {
		t.Fatal(err)
	}
	k.violations = 3
	if err := a.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	st, _ := a.Status(ctx)
	for _, s := range st {
		if s.Name == "Veth2" && s.State != api.PortErrDisabled {
			t.Errorf("Veth2 state %s, want err-disabled", s.State)
		}
	}
	if l, _ := k.State().Find("fvveth2"); l.Up {
		t.Error("fvveth2 still up")
	}
}

type violating struct {
	*vemtest.Kernel
	violations uint64
}

func (v *violating) Observe(ctx context.Context) (vem.KernelState, error) {
	st, err := v.Kernel.Observe(ctx)
	for i := range st.Links {
		if st.Links[i].Name == "fvveth2" {
			st.Links[i].Stats.SecurityViolations = v.violations
		}
	}
	return st, err
}

func TestStoreCorruptLeftUntouched(t *testing.T) {
	dir := t.TempDir()
	s := vem.Store{Path: filepath.Join(dir, "vem.json")}
	if err := s.Save(mustValidate(t, testConfig())); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(); err != nil {
		t.Fatalf("Load = %v", err)
	}
	data, _ := os.ReadFile(s.Path)
	var f map[string]json.RawMessage
	json.Unmarshal(data, &f)
	for name, mutate := range map[string]func() []byte{
		"garbage":  func() []byte { return []byte("{not json") },
		"checksum": func() []byte { return []byte(string(data[:len(data)-30]) + `"module":4}}` + "\n") },
		"version":  func() []byte { return []byte(`{"version":9,"sha256":"","config":{}}`) },
	} {
		bad := mutate()
		os.WriteFile(s.Path, bad, 0o600)
		if _, err := s.Load(); !errors.Is(err, vem.ErrCorruptState) {
			t.Errorf("%s: Load = %v, want ErrCorruptState", name, err)
		}
		if got, _ := os.ReadFile(s.Path); string(got) != string(bad) {
			t.Errorf("%s: file changed", name)
		}
	}
}

func FuzzDecodeConfig(f *testing.F) {
	seed, _ := json.Marshal(testConfig())
	f.Add(seed)
	f.Add([]byte(`{"module":3,"profiles":[{"name":"a","type":"vethernet","mode":"trunk","allowed_vlans":"1-3","enabled":true}],"ports":[{"name":"Veth1","kind":"veth","profile":"a","macs":["02:00:00:00:00:01"]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := vem.DecodeConfig(data)
		if err != nil {
			if !errors.Is(err, vem.ErrInvalid) {
				t.Fatalf("DecodeConfig error %v does not wrap ErrInvalid", err)
			}
			return
		}
		// Whatever validates can be applied and converges.
		k := vemtest.New("eth0", "eth1")
		d := vem.Desired(c, vem.Runtime{})
		if len(d.FDB) > 2000 {
			return // the fake's entry table is a slice: keep each input fast
		}
		for _, ch := range vem.Plan(d, k.State()) {
			if err := k.Apply(context.Background(), ch); err != nil {
				t.Fatalf("Apply: %v", err)
			}
		}
		if again := vem.Plan(d, k.State()); len(again) != 0 {
			t.Fatalf("Plan after apply = %v", again)
		}
	})
}

func itoa(i int) string { return string(rune('0'+i/10)) + string(rune('0'+i%10)) }
func hex2(i int) string { return string("0123456789abcdef"[i/16]) + string("0123456789abcdef"[i%16]) }
