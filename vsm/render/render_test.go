package render_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/vsm/render"
)

var equateEmpty = cmpopts.EquateEmpty()

func web(vlan int) api.PortProfile {
	return api.PortProfile{Name: "web", Type: api.ProfileVethernet, Mode: api.ModeAccess, AccessVLAN: vlan, Enabled: true}
}

var uplink = api.PortProfile{Name: "uplink", Type: api.ProfileEthernet, Mode: api.ModeTrunk, AllowedVLANs: "100-200",
	CapabilityUplink: true, Enabled: true, SystemVLANs: "100"}

var (
	vethWeb = api.Port{Name: "Veth1", Kind: api.PortVeth, Profile: "web", MACs: []string{"00:50:56:00:00:01"}, Owner: "vm:a/nic0"}
	eth     = api.Port{Name: "Eth3/1", Kind: api.PortEth, Interface: "eth0", Profile: "uplink"}
)

// message wraps c the way the daemon sends it and checks that the wire
// validation accepts it, then returns it decoded, as the VEM receives it.
func message(t *testing.T, c api.VSMConfigBody) api.VSMConfigBody {
	t.Helper()
	m := api.VSMMessage{Version: api.VSMProtocolVersion, Domain: 7, Type: api.VSMConfigMsg, Seq: 1, Config: &c}
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := api.DecodeVSMMessage(data)
	if err != nil {
		t.Fatalf("DecodeVSMMessage(%s): %v", data, err)
	}
	return *got.Config
}

// checkVEMRules checks what the VEM's own validation would refuse: ports
// on undefined or disabled profiles, or on a profile of the wrong type.
func checkVEMRules(t *testing.T, d render.Desired) {
	t.Helper()
	for _, p := range d.Ports {
		pp, ok := d.Profiles[p.Profile]
		switch {
		case !ok:
			t.Errorf("port %s: profile %q not defined", p.Name, p.Profile)
		case !pp.Enabled:
			t.Errorf("port %s: profile %q not enabled", p.Name, p.Profile)
		case p.Kind == api.PortVeth && pp.Type != api.ProfileVethernet:
			t.Errorf("port %s: vEth on %s profile %q", p.Name, pp.Type, p.Profile)
		case p.Kind != api.PortVeth && (pp.Type != api.ProfileEthernet || !pp.CapabilityUplink):
			t.Errorf("port %s: uplink on non-uplink profile %q", p.Name, p.Profile)
		}
	}
}

func TestRenderProfileChanges(t *testing.T) {
	draft := api.PortProfile{Name: "draft", Type: api.ProfileVethernet, Mode: api.ModeAccess}
	ports := []api.Port{vethWeb, eth, {Name: "Eth4/1", Kind: api.PortEth, Interface: "eth0", Profile: "uplink"}}

	v1 := render.Snapshot(3, []api.PortProfile{web(100), uplink, draft}, ports)
	want := render.Desired{
		Module:   3,
		Profiles: map[string]api.PortProfile{"web": web(100), "uplink": uplink},
		Ports:    map[string]api.Port{"Veth1": vethWeb, "Eth3/1": eth},
	}
	if diff := cmp.Diff(want, v1); diff != "" {
		t.Errorf("Snapshot (-want +got):\n%s", diff)
	}
	checkVEMRules(t, v1)
	full := message(t, render.Full(1, v1, &api.VSMOpaque{DomainID: 7, SwitchName: "n1k"}))
	if got, err := render.Apply(render.Desired{Module: 3}, full); err != nil || !render.Equal(got, v1) {
		t.Errorf("Apply(empty, Full) = %v, %v; want %v", got, err, v1)
	}

	// web moves to VLAN 200: the delta carries the profile only.
	v2 := render.Snapshot(3, []api.PortProfile{web(200), uplink, draft}, ports)
	d, changed := render.Delta(1, v1, v2)
	wantDelta := api.VSMConfigBody{Generation: 2, Base: 1, Profiles: []api.PortProfile{web(200)}}
	if diff := cmp.Diff(wantDelta, d); !changed || diff != "" {
		t.Errorf("Delta(VLAN 100 -> 200) = %v (-want +got):\n%s", changed, diff)
	}

	// web is disabled while Veth1 uses it: Veth1 is quarantined, shut down.
	off := web(200)
	off.Enabled = false
	v3 := render.Snapshot(3, []api.PortProfile{off, uplink, draft}, ports)
	checkVEMRules(t, v3)
	d, changed = render.Delta(2, v2, v3)
	q := v3.Profiles[render.QuarantineVeth]
	if !q.Shutdown || !q.Enabled || q.Type != api.ProfileVethernet {
		t.Errorf("quarantine profile = %+v, want an enabled, shut down vethernet profile", q)
	}
	quarantined := vethWeb
	quarantined.Profile, quarantined.Shutdown = render.QuarantineVeth, true
	wantDelta = api.VSMConfigBody{Generation: 3, Base: 2,
		Profiles: []api.PortProfile{q}, Ports: []api.Port{quarantined}, RemoveProfiles: []string{"web"}}
	if diff := cmp.Diff(wantDelta, d); !changed || diff != "" {
		t.Errorf("Delta(disable web) = %v (-want +got):\n%s", changed, diff)
	}
	if got, err := render.Apply(v2, message(t, d)); err != nil || !render.Equal(got, v3) {
		t.Errorf("Apply(v2, delta) = %v, %v; want %v", got, err, v3)
	}

	// Enabled again: back on web, the quarantine profile goes away.
	v4 := render.Snapshot(3, []api.PortProfile{web(200), uplink, draft}, ports)
	d, _ = render.Delta(3, v3, v4)
	wantDelta = api.VSMConfigBody{Generation: 4, Base: 3,
		Profiles: []api.PortProfile{web(200)}, Ports: []api.Port{vethWeb}, RemoveProfiles: []string{render.QuarantineVeth}}
	if diff := cmp.Diff(wantDelta, d); diff != "" {
		t.Errorf("Delta(enable web) (-want +got):\n%s", diff)
	}
	if _, changed := render.Delta(4, v4, v4); changed {
		t.Errorf("Delta(v4, v4) changed = true")
	}
}

func TestSnapshotQuarantine(t *testing.T) {
	off := uplink
	off.Name, off.Enabled = "uplink-off", false
	plain := api.PortProfile{Name: "plain", Type: api.ProfileEthernet, Mode: api.ModeTrunk, Enabled: true}
	in := []api.Port{
		{Name: "Veth1", Kind: api.PortVeth, Profile: "missing"},
		{Name: "Veth2", Kind: api.PortVeth, Profile: "uplink"}, // uplink profile on a vEth
		{Name: "Veth3", Kind: api.PortVeth, Profile: "web"},
		{Name: "Eth3/1", Kind: api.PortEth, Interface: "eth0", Profile: "uplink-off"},
		{Name: "Eth3/2", Kind: api.PortEth, Interface: "eth1", Profile: "plain"}, // no capability uplink
		{Name: "Eth3/3", Kind: api.PortEth, Interface: "eth2", Profile: "web"},
		{Name: "Eth3/4", Kind: api.PortEth, Interface: "eth3"},
		{Name: "Eth3/5", Kind: api.PortEth, Interface: "eth4", Profile: "uplink"},
	}
	d := render.Snapshot(3, []api.PortProfile{web(10), uplink, off, plain}, in)
	checkVEMRules(t, d)
	var shut []string
	for _, name := range []string{"Veth1", "Veth2", "Veth3", "Eth3/1", "Eth3/2", "Eth3/3", "Eth3/4", "Eth3/5"} {
		if d.Ports[name].Shutdown {
			shut = append(shut, name+"="+d.Ports[name].Profile)
		}
	}
	want := []string{
		"Veth1=" + render.QuarantineVeth, "Veth2=" + render.QuarantineVeth,
		"Eth3/1=" + render.QuarantineUplink, "Eth3/2=" + render.QuarantineUplink,
		"Eth3/3=" + render.QuarantineUplink, "Eth3/4=" + render.QuarantineUplink,
	}
	if diff := cmp.Diff(want, shut); diff != "" {
		t.Errorf("quarantined ports (-want +got):\n%s", diff)
	}
	// The input is not modified.
	if in[0].Profile != "missing" || in[0].Shutdown {
		t.Errorf("Snapshot modified its input: %+v", in[0])
	}
	// A user profile named like a built-in is replaced where needed.
	fake := api.PortProfile{Name: render.QuarantineVeth, Type: api.ProfileVethernet, Mode: api.ModeAccess, AccessVLAN: 5, Enabled: true}
	d = render.Snapshot(3, []api.PortProfile{fake}, in[:1])
	if p := d.Profiles[render.QuarantineVeth]; !p.Shutdown || p.AccessVLAN != 0 {
		t.Errorf("quarantine profile = %+v, want the built-in", p)
	}
	// Eth ports of other modules are left out.
	d = render.Snapshot(4, []api.PortProfile{uplink}, []api.Port{eth})
	if len(d.Ports) != 0 {
		t.Errorf("Snapshot(4) with Eth3/1 = %v, want no ports", d.Ports)
	}
}

func TestApplyRefusals(t *testing.T) {
	base := render.Snapshot(3, []api.PortProfile{web(100), uplink}, []api.Port{vethWeb, eth})
	for name, c := range map[string]api.VSMConfigBody{
		"remove missing port":      {Generation: 2, Base: 1, RemovePorts: []string{"Veth9"}},
		"remove missing profile":   {Generation: 2, Base: 1, RemoveProfiles: []string{"db"}},
		"remove used profile":      {Generation: 2, Base: 1, RemoveProfiles: []string{"web"}},
		"port on missing profile":  {Generation: 2, Base: 1, Ports: []api.Port{{Name: "Veth2", Kind: api.PortVeth, Profile: "db"}}},
		"set twice":                {Generation: 2, Base: 1, Profiles: []api.PortProfile{web(1), web(2)}},
		"port twice":               {Generation: 2, Base: 1, Ports: []api.Port{vethWeb, vethWeb}},
		"remove and set":           {Generation: 2, Base: 1, Ports: []api.Port{vethWeb}, RemovePorts: []string{"Veth1"}},
		"no name":                  {Generation: 2, Base: 1, Profiles: []api.PortProfile{{}}},
		"full with removes":        {Generation: 2, Full: true, RemovePorts: []string{"Veth1"}},
		"full on missing profiles": {Generation: 2, Full: true, Ports: []api.Port{vethWeb}},
	} {
		got, err := render.Apply(base, c)
		if !errors.Is(err, render.ErrNotApplicable) {
			t.Errorf("Apply(%s) = %v, %v; want ErrNotApplicable", name, got, err)
		}
	}
}

func TestDeltaTable(t *testing.T) {
	db := api.PortProfile{Name: "db", Type: api.ProfileVethernet, Mode: api.ModeAccess, AccessVLAN: 300, Enabled: true,
		Ingress: &api.RateLimit{BitsPerSecond: 1e6}, PortSecurity: &api.PortSecurity{MaxMACs: 2}}
	db2 := db
	db2.Ingress = &api.RateLimit{BitsPerSecond: 2e6}
	veth2 := api.Port{Name: "Veth2", Kind: api.PortVeth, Profile: "db", Owner: "vm:b/nic0"}
	veth2mac := veth2
	veth2mac.MACs = []string{"00:50:56:00:00:02"}
	veth2empty := veth2
	veth2empty.MACs = []string{}
	snap := func(pp []api.PortProfile, ports ...api.Port) render.Desired { return render.Snapshot(3, pp, ports) }
	for _, tc := range []struct {
		name     string
		old, new render.Desired
		changed  bool
	}{
		{"empty", render.Desired{Module: 3}, render.Desired{Module: 3}, false},
		{"nil vs empty MACs", snap([]api.PortProfile{db}, veth2), snap([]api.PortProfile{db}, veth2empty), false},
		{"first port", snap([]api.PortProfile{db}), snap([]api.PortProfile{db}, veth2), true},
		{"mac added", snap([]api.PortProfile{db}, veth2), snap([]api.PortProfile{db}, veth2mac), true},
		{"rate changed", snap([]api.PortProfile{db}, veth2), snap([]api.PortProfile{db2}, veth2), true},
		{"everything goes", snap([]api.PortProfile{db, web(1), uplink}, veth2, vethWeb, eth), render.Desired{Module: 3}, true},
		{"everything comes", render.Desired{Module: 3}, snap([]api.PortProfile{db, web(1), uplink}, veth2, vethWeb, eth), true},
		{"profile swap", snap([]api.PortProfile{db, web(1)}, vethWeb), snap([]api.PortProfile{db}, veth2), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, changed := render.Delta(10, tc.old, tc.new)
			if changed != tc.changed {
				t.Errorf("Delta changed = %v, want %v (%+v)", changed, tc.changed, c)
			}
			if !changed {
				return
			}
			got, err := render.Apply(tc.old, message(t, c))
			if err != nil {
				t.Fatalf("Apply(old, Delta): %v", err)
			}
			if diff := cmp.Diff(tc.new, got, equateEmpty); diff != "" {
				t.Errorf("Apply(old, Delta(old, new)) (-new +got):\n%s", diff)
			}
		})
	}
}

func TestNoAliasing(t *testing.T) {
	p := web(100)
	p.Ingress = &api.RateLimit{BitsPerSecond: 1e6}
	port := vethWeb
	port.MACs = []string{"00:50:56:00:00:01"}
	d := render.Snapshot(3, []api.PortProfile{p}, []api.Port{port})
	p.Ingress.BitsPerSecond = 5
	port.MACs[0] = "changed"
	if d.Profiles["web"].Ingress.BitsPerSecond != 1e6 || d.Ports["Veth1"].MACs[0] != "00:50:56:00:00:01" {
		t.Errorf("Snapshot shares memory with its input")
	}
	full := render.Full(1, d, nil)
	full.Profiles[0].Ingress.BitsPerSecond = 7
	full.Ports[0].MACs[0] = "changed"
	if d.Profiles["web"].Ingress.BitsPerSecond != 1e6 || d.Ports["Veth1"].MACs[0] != "00:50:56:00:00:01" {
		t.Errorf("Full shares memory with the Desired")
	}
}

func TestSwitchConfig(t *testing.T) {
	d := render.Snapshot(3, []api.PortProfile{web(100), uplink}, []api.Port{vethWeb, eth})
	want := api.SwitchConfig{DomainID: 7, Module: 3, Profiles: []api.PortProfile{uplink, web(100)}, Ports: []api.Port{eth, vethWeb}}
	if diff := cmp.Diff(want, d.SwitchConfig(7)); diff != "" {
		t.Errorf("SwitchConfig (-want +got):\n%s", diff)
	}
}

// randomDesired builds a module's programming from r, over small name
// spaces so that two of them overlap and differ in interesting ways.
func randomDesired(r *rand.Rand) render.Desired {
	var profiles []api.PortProfile
	for i := range 5 {
		if r.IntN(3) == 0 {
			continue
		}
		p := api.PortProfile{Name: fmt.Sprintf("p%d", i), Mode: api.ModeAccess, AccessVLAN: 1 + r.IntN(3), Enabled: r.IntN(5) > 0, Shutdown: r.IntN(4) == 0}
		if i >= 3 {
			p.Type, p.Mode, p.AccessVLAN, p.CapabilityUplink = api.ProfileEthernet, api.ModeTrunk, 0, true
			p.AllowedVLANs = []string{"", "1-10", "all"}[r.IntN(3)]
		} else {
			p.Type = api.ProfileVethernet
		}
		if r.IntN(3) == 0 {
			p.Egress = &api.RateLimit{BitsPerSecond: uint64(1+r.IntN(2)) * 1e6}
		}
		profiles = append(profiles, p)
	}
	var ports []api.Port
	for i := range 1 + r.IntN(8) {
		n := 1 + r.IntN(10)
		if i%3 == 2 {
			ports = append(ports, api.Port{Name: fmt.Sprintf("Eth3/%d", n%4+1), Kind: api.PortEth,
				Interface: fmt.Sprintf("eth%d", n%4), Profile: fmt.Sprintf("p%d", 3+r.IntN(3))})
			continue
		}
		p := api.Port{Name: fmt.Sprintf("Veth%d", n), Kind: api.PortVeth, Profile: fmt.Sprintf("p%d", r.IntN(4)), Owner: fmt.Sprintf("vm:x%d/nic0", r.IntN(3))}
		if r.IntN(2) == 0 {
			p.MACs = []string{fmt.Sprintf("00:50:56:00:00:%02x", r.IntN(3))}
		}
		ports = append(ports, p)
	}
	return render.Snapshot(3, profiles, ports)
}

// checkRoundTrip is the property: the delta from old to new, sent over the
// wire and applied to old, gives new; and a full snapshot of new gives new
// from anything.
func checkRoundTrip(t *testing.T, old, new render.Desired) {
	t.Helper()
	checkVEMRules(t, new)
	c, changed := render.Delta(41, old, new)
	if changed == render.Equal(old, new) {
		t.Fatalf("Delta changed = %v, but Equal(old, new) = %v", changed, render.Equal(old, new))
	}
	if _, again := render.Delta(41, new, new); again {
		t.Errorf("Delta(new, new) changed = true")
	}
	if changed {
		got, err := render.Apply(old, message(t, c))
		if err != nil {
			t.Fatalf("Apply(old, Delta(old, new)): %v\nold %v\nnew %v\ndelta %+v", err, old, new, c)
		}
		if diff := cmp.Diff(new, got, equateEmpty); diff != "" || !render.Equal(new, got) {
			t.Errorf("Apply(old, Delta(old, new)) (-new +got):\n%s", diff)
		}
	}
	got, err := render.Apply(old, message(t, render.Full(42, new, nil)))
	if err != nil {
		t.Fatalf("Apply(old, Full(new)): %v", err)
	}
	if diff := cmp.Diff(new, got, equateEmpty); diff != "" {
		t.Errorf("Apply(old, Full(new)) (-new +got):\n%s", diff)
	}
}

func TestDeltaProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 500 {
		checkRoundTrip(t, randomDesired(r), randomDesired(r))
	}
}

func FuzzDelta(f *testing.F) {
	f.Add(uint64(1), uint64(2))
	f.Add(uint64(0), uint64(0))
	f.Fuzz(func(t *testing.T, a, b uint64) {
		checkRoundTrip(t, randomDesired(rand.New(rand.NewPCG(a, 0))), randomDesired(rand.New(rand.NewPCG(b, 0))))
	})
}

// TestPortChannelMode: a PoN takes its mode from its profile's
// channel-group, and a quarantined one is shut with its members; the VEM
// accepts both programmings.
func TestPortChannelMode(t *testing.T) {
	lacp := uplink
	lacp.ChannelGroup = api.ChannelLACP
	m1 := api.Port{Name: "Eth3/2", Kind: api.PortEth, Interface: "eth1", Profile: "uplink"}
	m2 := api.Port{Name: "Eth3/3", Kind: api.PortEth, Interface: "eth2", Profile: "uplink"}
	po := api.Port{Name: "Po1", Kind: api.PortPortChannel, Profile: "uplink", Members: []string{"Eth3/2", "Eth3/3"}}
	d := render.Snapshot(3, []api.PortProfile{lacp}, []api.Port{m1, m2, po})
	if got := d.Ports["Po1"]; got.ChannelMode != api.ChannelLACP || got.Shutdown || len(got.Members) != 2 {
		t.Errorf("Po1 = %+v, want LACP with two members", got)
	}
	checkVEMRules(t, d)
	off := lacp
	off.Enabled = false
	d = render.Snapshot(3, []api.PortProfile{off}, []api.Port{m1, m2, po})
	for _, name := range []string{"Po1", "Eth3/2", "Eth3/3"} {
		if p := d.Ports[name]; p.Profile != render.QuarantineUplink || !p.Shutdown {
			t.Errorf("%s with its profile disabled = %+v, want quarantined", name, p)
		}
	}
	checkVEMRules(t, d)
}
