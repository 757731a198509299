package netseam

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"testing"

	"github.com/flashvisor/flashvisor/api"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var (
	pgNet  = api.PortGroup{Name: "VM Network", HostAddress: "10.0.0.1/24"}
	pgProd = api.PortGroup{Name: "prod", VLAN: 100}
	pgDev  = api.PortGroup{Name: "dev", VLAN: 200}

	web0 = Port{VM: "web", NIC: 0, PortGroup: "VM Network", MAC: "00:50:56:00:00:01"}
	web1 = Port{VM: "web", NIC: 1, PortGroup: "prod", MAC: "00:50:56:00:00:02"}
	db0  = Port{VM: "db", NIC: 0, PortGroup: "VM Network", MAC: "00:50:56:00:00:03"}
)

func tapLink(p Port, master string) Link {
	mac, _ := tapMAC(p.MAC)
	return Link{Name: p.tap(), Kind: KindTap, Alias: p.alias(), MAC: mac, Master: master}
}

func TestDesired(t *testing.T) {
	brNet, brProd, brDev := BridgeName("VM Network"), BridgeName("prod"), BridgeName("dev")
	bridgeNet := Link{Name: brNet, Kind: KindBridge, Alias: "VM Network", Addrs: []netip.Prefix{netip.MustParsePrefix("10.0.0.1/24")}}
	bridgeProd := Link{Name: brProd, Kind: KindBridge, Alias: "prod"}
	bridgeDev := Link{Name: brDev, Kind: KindBridge, Alias: "dev"}
	tests := []struct {
		name    string
		pgs     []api.PortGroup
		uplink  string
		ports   []Port
		want    []Link
		wantErr error
	}{
		{
			name: "nothing",
		},
		{
			name:  "isolated bridges without an uplink",
			pgs:   []api.PortGroup{pgProd, pgNet},
			ports: []Port{web1, db0, web0},
			want: []Link{
				bridgeNet, bridgeProd,
				tapLink(db0, brNet), tapLink(web0, brNet), tapLink(web1, brProd),
			},
		},
		{
			name:   "uplink: untagged port group takes the uplink, VLAN ones a sub-interface each",
			pgs:    []api.PortGroup{pgNet, pgProd, pgDev},
			uplink: "eth0",
			ports:  []Port{web0},
			want: []Link{
				{Name: "eth0", Kind: KindUplink, Master: brNet},
				bridgeDev, bridgeNet, bridgeProd,
				tapLink(web0, brNet),
				{Name: "fvvlan100", Kind: KindVLAN, Parent: "eth0", VLAN: 100, Master: brProd},
				{Name: "fvvlan200", Kind: KindVLAN, Parent: "eth0", VLAN: 200, Master: brDev},
			},
		},
		{
			name:   "uplink with VLAN port groups only stays up, unbridged",
			pgs:    []api.PortGroup{pgProd},
			uplink: "eth0",
			want: []Link{
				{Name: "eth0", Kind: KindUplink},
				bridgeProd,
				{Name: "fvvlan100", Kind: KindVLAN, Parent: "eth0", VLAN: 100, Master: brProd},
			},
		},
		{
			name:    "two port groups on one VLAN of the uplink: the second stays isolated",
			pgs:     []api.PortGroup{pgProd, {Name: "prod2", VLAN: 100}},
			uplink:  "eth0",
			want:    []Link{{Name: "eth0", Kind: KindUplink}, bridgeProd, {Name: BridgeName("prod2"), Kind: KindBridge, Alias: "prod2"}, {Name: "fvvlan100", Kind: KindVLAN, Parent: "eth0", VLAN: 100, Master: brProd}},
			wantErr: ErrInvalid,
		},
		{
			name:    "a port on a missing port group keeps its tap, unplugged",
			pgs:     []api.PortGroup{pgNet},
			ports:   []Port{web0, web1},
			want:    []Link{bridgeNet, tapLink(web0, brNet), tapLink(web1, "")},
			wantErr: ErrNoPortGroup,
		},
		{
			name:    "an invalid port is left out",
			pgs:     []api.PortGroup{pgNet},
			ports:   []Port{{VM: "x", NIC: 0, PortGroup: "VM Network", MAC: "nope"}, db0},
			want:    []Link{bridgeNet, tapLink(db0, brNet)},
			wantErr: ErrInvalid,
		},
		{
			name:    "the same vNIC twice",
			pgs:     []api.PortGroup{pgNet},
			ports:   []Port{db0, db0},
			want:    []Link{bridgeNet, tapLink(db0, brNet)},
			wantErr: ErrNameCollision,
		},
		{
			name:    "an uplink named like one of our links",
			pgs:     []api.PortGroup{pgNet},
			uplink:  brNet,
			want:    []Link{{Name: brNet, Kind: KindBridge, Alias: "VM Network", Addrs: bridgeNet.Addrs}},
			wantErr: ErrNameCollision,
		},
	}
	for _, tt := range tests {
		(&State{Links: tt.want}).Sort()
		got, err := Desired(tt.pgs, tt.uplink, tt.ports)
		if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
			t.Errorf("%s: Desired error = %v, want %v", tt.name, err, tt.wantErr)
		}
		if d := cmp.Diff(tt.want, got.Links, cmpopts.EquateEmpty(), cmpopts.EquateComparable(netip.Prefix{})); d != "" {
			t.Errorf("%s: Desired links (-want +got):\n%s", tt.name, d)
		}
	}
}

func actionStrings(acts []Action) []string {
	var s []string
	for _, a := range acts {
		s = append(s, a.String())
	}
	return s
}

func TestPlanFromScratch(t *testing.T) {
	desired, err := Desired([]api.PortGroup{pgNet, pgProd}, "eth0", []Port{web0})
	if err != nil {
		t.Fatal(err)
	}
	k := newFakeKernel("eth0")
	observed, _ := k.Observe(context.Background(), "eth0")
	brNet, brProd, tap := BridgeName("VM Network"), BridgeName("prod"), web0.tap()
	// Bridges in name order (brProd = fvpg-cjg..., brNet = fvpg-rh5...),
	// then their ports, then the taps.
	want := []string{
		"create bridge " + brProd,
		`set alias bridge ` + brProd + ` "prod"`,
		"set up bridge " + brProd,
		"create bridge " + brNet,
		`set alias bridge ` + brNet + ` "VM Network"`,
		"set up bridge " + brNet,
		"add addr bridge " + brNet + " 10.0.0.1/24",
		"create vlan fvvlan100 on eth0 vlan 100",
		"set master vlan fvvlan100 " + brProd,
		"set up vlan fvvlan100",
		"set master uplink eth0 " + brNet,
		"set up uplink eth0",
		"create tap " + tap,
		"set alias tap " + tap + " " + strconv.Quote(web0.alias()),
		"set mac tap " + tap + " fe:50:56:00:00:01",
		"sync mtu tap " + tap,
		"set master tap " + tap + " " + brNet,
		"set up tap " + tap,
	}
	got := actionStrings(Plan(desired, observed))
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Plan from scratch (-want +got):\n%s", d)
	}
}

// Applying a plan and planning again gives nothing: reconcile is idempotent.
func TestPlanConverges(t *testing.T) {
	tests := []struct {
		name   string
		pgs    []api.PortGroup
		uplink string
		ports  []Port
	}{
		{"empty", nil, "", nil},
		{"isolated", []api.PortGroup{pgNet, pgProd}, "", []Port{web0, web1, db0}},
		{"uplink", []api.PortGroup{pgNet, pgProd, pgDev}, "eth0", []Port{web0, web1, db0}},
		{"missing port group", []api.PortGroup{pgNet}, "", []Port{web0, web1}},
	}
	ctx := context.Background()
	for _, tt := range tests {
		k := newFakeKernel("eth0")
		desired, _ := Desired(tt.pgs, tt.uplink, tt.ports)
		for round := 0; round < 2; round++ {
			observed, _ := k.Observe(ctx, tt.uplink)
			acts := Plan(desired, observed)
			if round == 1 && len(acts) > 0 {
				t.Errorf("%s: second Plan = %q, want nothing", tt.name, actionStrings(acts))
			}
			for _, a := range acts {
				if err := k.Apply(ctx, a); err != nil {
					t.Fatalf("%s: %v", tt.name, err)
				}
			}
		}
	}
}

func TestPlanCorrects(t *testing.T) {
	ctx := context.Background()
	brNet, brProd := BridgeName("VM Network"), BridgeName("prod")
	tests := []struct {
		name   string
		before func(k *fakeKernel) // breaks the converged state
		want   []string
	}{
		{
			name: "tap on the wrong bridge, down, wrong MTU",
			before: func(k *fakeKernel) {
				l := k.links[web0.tap()]
				l.Master, l.Up, l.MTU = brProd, false, 9000
			},
			want: []string{
				"sync mtu tap " + web0.tap(),
				"set master tap " + web0.tap() + " " + brNet,
				"set up tap " + web0.tap(),
			},
		},
		{
			name: "strays of ours are deleted, others' links are left alone",
			before: func(k *fakeKernel) {
				k.add(Link{Name: "fvtstray0000n0", Kind: KindTap})
				k.add(Link{Name: BridgeName("gone"), Kind: KindBridge})
				k.add(Link{Name: "fvvlan7", Kind: KindVLAN, Parent: "eth0", VLAN: 7})
				k.add(Link{Name: "tap0", Kind: KindTap})
				k.add(Link{Name: "br0", Kind: KindBridge})
			},
			want: []string{
				"delete tap fvtstray0000n0",
				"delete vlan fvvlan7",
				"delete bridge " + BridgeName("gone"),
			},
		},
		{
			name: "a foreign port on our bridge is taken off, an extra address removed",
			before: func(k *fakeKernel) {
				k.add(Link{Name: "veth9", Master: brNet})
				k.links[brNet].Addrs = append(k.links[brNet].Addrs, netip.MustParsePrefix("192.168.9.9/24"))
			},
			want: []string{
				"del addr bridge " + brNet + " 192.168.9.9/24",
				"set master uplink veth9 nomaster",
			},
		},
		{
			name: "a link of ours of the wrong kind is replaced",
			before: func(k *fakeKernel) {
				k.links[brProd].Kind = "dummy"
			},
			want: []string{
				"delete dummy " + brProd,
				"create bridge " + brProd,
				`set alias bridge ` + brProd + ` "prod"`,
				"set up bridge " + brProd,
				// web1's tap lost its master with the old link.
				"sync mtu tap " + web1.tap(),
				"set master tap " + web1.tap() + " " + brProd,
			},
		},
	}
	for _, tt := range tests {
		k := newFakeKernel()
		desired, err := Desired([]api.PortGroup{pgNet, pgProd}, "", []Port{web0, web1})
		if err != nil {
			t.Fatal(err)
		}
		apply := func() []string {
			observed, _ := k.Observe(ctx, "")
			acts := Plan(desired, observed)
			for _, a := range acts {
				if err := k.Apply(ctx, a); err != nil {
					t.Fatalf("%s: %v", tt.name, err)
				}
			}
			return actionStrings(acts)
		}
		apply()
		tt.before(k)
		if d := cmp.Diff(tt.want, apply()); d != "" {
			t.Errorf("%s: Plan (-want +got):\n%s", tt.name, d)
		}
		if got := apply(); len(got) > 0 {
			t.Errorf("%s: after correcting, Plan = %q, want nothing", tt.name, got)
		}
	}
}
