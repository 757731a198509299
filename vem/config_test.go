package vem_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/vem"
)

// testConfig is a standalone host: a web access profile, a trunk for a
// router VM, an uplink profile, two vEths, one Eth and a Po of two Eths.
func testConfig() api.SwitchConfig {
	return api.SwitchConfig{
		Module: 3,
		Profiles: []api.PortProfile{
			{Name: "web", Type: api.ProfileVethernet, Mode: api.ModeAccess, AccessVLAN: 100, Enabled: true},
			{Name: "router", Type: api.ProfileVethernet, Mode: api.ModeTrunk, AllowedVLANs: "100,200-201", NativeVLAN: 200, Enabled: true,
				PortSecurity: &api.PortSecurity{MaxMACs: 2, Violation: api.ViolationProtect}},
			{Name: "uplink", Type: api.ProfileEthernet, Mode: api.ModeTrunk, AllowedVLANs: "1,100-300", CapabilityUplink: true, Enabled: true, SystemVLANs: "260"},
		},
		Ports: []api.Port{
			{Name: "Veth1", Kind: api.PortVeth, Profile: "web", MACs: []string{"52:54:00:00:00:01"}},
			{Name: "Veth2", Kind: api.PortVeth, Profile: "router", MACs: []string{"52:54:00:00:00:02"}},
			{Name: "Eth3/1", Kind: api.PortEth, Profile: "uplink", Interface: "eth0"},
			{Name: "Eth3/2", Kind: api.PortEth, Interface: "eth1"},
			{Name: "Eth3/3", Kind: api.PortEth, Interface: "eth2"},
			{Name: "Po1", Kind: api.PortPortChannel, Profile: "uplink", Members: []string{"Eth3/2", "Eth3/3"}, ChannelMode: api.ChannelMACPinning},
		},
	}
}

func mustValidate(t testing.TB, sc api.SwitchConfig) *vem.Config {
	t.Helper()
	c, err := vem.Validate(sc)
	if err != nil {
		t.Fatalf("Validate: %v", err)
	}
	return c
}

func TestValidate(t *testing.T) {
	prof := func(i int, f func(*api.PortProfile)) func(*api.SwitchConfig) {
		return func(sc *api.SwitchConfig) { f(&sc.Profiles[i]) }
	}
	port := func(i int, f func(*api.Port)) func(*api.SwitchConfig) {
		return func(sc *api.SwitchConfig) { f(&sc.Ports[i]) }
	}
	for _, tc := range []struct {
		name   string
		change func(*api.SwitchConfig)
		want   string // a part of the error that says what and where; "" = valid
	}{
		{"valid", func(*api.SwitchConfig) {}, ""},
		{"module", func(sc *api.SwitchConfig) { sc.Module = 2 }, "module 2"},
		{"bad allowed list", prof(1, func(p *api.PortProfile) { p.AllowedVLANs = "10-20,4095" }), `"router": allowed vlans`},
		{"access vlan range", prof(0, func(p *api.PortProfile) { p.AccessVLAN = 4095 }), `"web": access vlan 4095`},
		{"allowed on access", prof(0, func(p *api.PortProfile) { p.AllowedVLANs = "1" }), `"web": allowed and native`},
		{"access on trunk", prof(1, func(p *api.PortProfile) { p.AccessVLAN = 5 }), `"router": access vlan needs`},
		{"system vlan not carried", prof(2, func(p *api.PortProfile) { p.SystemVLANs = "999" }), `system vlans 999 are not carried`},
		{"uplink capability on vethernet", prof(0, func(p *api.PortProfile) { p.CapabilityUplink = true }), `"web": capability uplink needs type ethernet`},
		{"port-security on ethernet", prof(2, func(p *api.PortProfile) { p.PortSecurity = &api.PortSecurity{MaxMACs: 1} }), `"uplink": port-security is for vethernet`},
		{"violation", prof(1, func(p *api.PortProfile) { p.PortSecurity.Violation = "restrict" }), `violation "restrict"`},
		{"rate", prof(0, func(p *api.PortProfile) { p.Ingress = &api.RateLimit{BitsPerSecond: 10} }), `ingress rate 10`},
		{"vethernet profile on uplink", port(2, func(p *api.Port) { p.Profile = "web" }), `Eth3/1: port-profile "web": an uplink needs`},
		{"uplink profile on vEth", port(0, func(p *api.Port) { p.Profile = "uplink" }), `Veth1: port-profile "uplink" is type ethernet`},
		{"disabled profile", prof(0, func(p *api.PortProfile) { p.Enabled = false }), `Veth1: port-profile "web": not enabled`},
		{"unknown profile", port(0, func(p *api.Port) { p.Profile = "nope" }), `Veth1: port-profile "nope": not defined`},
		{"kind mismatch", port(0, func(p *api.Port) { p.Kind = api.PortEth }), `Veth1: kind "eth"`},
		{"bad name", port(0, func(p *api.Port) { p.Name = "Veth01" }), `"Veth01"`},
		{"wrong module", port(2, func(p *api.Port) { p.Name = "Eth4/1" }), `Eth4/1: module 4`},
		{"Eth without NIC", port(2, func(p *api.Port) { p.Interface = "" }), `Eth3/1: needs its physical interface`},
		{"multicast MAC", port(0, func(p *api.Port) { p.MACs = []string{"01:00:5e:00:00:01"} }), `Veth1: MAC "01:00:5e:00:00:01"`},
		{"MAC on two ports", port(1, func(p *api.Port) { p.MACs = []string{"52:54:00:00:00:01"} }), `already on Veth1`},
		{"too many MACs", port(1, func(p *api.Port) { p.MACs = []string{"52:54:00:00:00:02", "52:54:00:00:00:03", "52:54:00:00:00:04"} }), `Veth2: 3 MACs, port-security maximum 2`},
		{"MACs on uplink", port(2, func(p *api.Port) { p.MACs = []string{"52:54:00:00:00:09"} }), `Eth3/1: static MACs are for vEth`},
		{"member missing", port(5, func(p *api.Port) { p.Members = []string{"Eth3/9"} }), `Po1: member Eth3/9: no such port`},
		{"member is vEth", port(5, func(p *api.Port) { p.Members = []string{"Veth1"} }), `Po1: member Veth1: only Eth`},
		{"lonely Eth", port(5, func(p *api.Port) { p.Members = []string{"Eth3/2"} }), `Eth3/3: needs a profile or a port-channel`},
		{"channel mode", port(5, func(p *api.Port) { p.ChannelMode = "on" }), `channel mode "on"`},
		{"interface twice", port(3, func(p *api.Port) { p.Interface = "eth0" }), `interface eth0 already used by`},
		{"VEM's own name", port(0, func(p *api.Port) { p.Interface = "fvveth7" }), `"fvveth7"`},
		{"max ports", prof(0, func(p *api.PortProfile) { p.MaxPorts = 1 }), ""},
		{"max ports exceeded", func(sc *api.SwitchConfig) {
			sc.Profiles[0].MaxPorts = 1
			sc.Ports[1].Profile = "web"
		}, `"web": used by 2 ports, max-ports 1`},
		{"duplicate port", func(sc *api.SwitchConfig) { sc.Ports = append(sc.Ports, sc.Ports[0]) }, `Veth1: defined twice`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc := testConfig()
			tc.change(&sc)
			_, err := vem.Validate(sc)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, vem.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want ErrInvalid mentioning %q", err, tc.want)
			}
		})
	}
}

func TestDecodeConfigStrict(t *testing.T) {
	for _, in := range []string{`{"module":3,"bogus":1}`, `{"module":3} {}`, `[`, `{"module":3,"ports":[{"name":"Veth1","kind":"veth"}]}`} {
		if _, err := vem.DecodeConfig([]byte(in)); !errors.Is(err, vem.ErrInvalid) {
			t.Errorf("DecodeConfig(%s) = %v, want ErrInvalid", in, err)
		}
	}
	if _, err := vem.DecodeConfig([]byte(`{"module":3}`)); err != nil {
		t.Errorf("DecodeConfig(empty switch) = %v", err)
	}
}
