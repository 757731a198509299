package vsmlink_test

import (
	"errors"
	"testing"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/vem"
	"github.com/flashvisor/flashvisor/vem/vsmlink"
	"github.com/google/go-cmp/cmp"
)

func TestMerge(t *testing.T) {
	local := api.SwitchConfig{Module: 3,
		Profiles: []api.PortProfile{{Name: "fv-uplink"}},
		Ports: []api.Port{
			{Name: "Eth3/1", Kind: api.PortEth, Interface: "eth0"},
			{Name: "Eth3/2", Kind: api.PortEth, Interface: "eth2"}, // hostd's next free P
			{Name: "Eth3/4", Kind: api.PortEth, Interface: "enp3s0"},
			{Name: "Po1", Kind: api.PortPortChannel, Members: []string{"Eth3/1", "Eth3/2"}},
			{Name: "Veth1", Kind: api.PortVeth},
		}}
	part := vsmlink.Part{
		Profiles: []api.PortProfile{{Name: "web"}},
		Ports:    []api.Port{{Name: "Eth5/2", Kind: api.PortEth, Interface: "eth1"}, {Name: "Veth10", Kind: api.PortVeth}},
	}
	got, err := vsmlink.Merge(local, part, 7, 5)
	if err != nil {
		t.Fatal(err)
	}
	want := api.SwitchConfig{DomainID: 7, Module: 5,
		Profiles: []api.PortProfile{{Name: "fv-uplink"}, {Name: "web"}},
		Ports: []api.Port{
			{Name: "Eth5/1", Kind: api.PortEth, Interface: "eth0"},
			{Name: "Eth5/3", Kind: api.PortEth, Interface: "eth2"},
			{Name: "Eth5/4", Kind: api.PortEth, Interface: "enp3s0"},
			{Name: "Po1", Kind: api.PortPortChannel, Members: []string{"Eth5/1", "Eth5/3"}},
			{Name: "Veth1", Kind: api.PortVeth},
			{Name: "Eth5/2", Kind: api.PortEth, Interface: "eth1"},
			{Name: "Veth10", Kind: api.PortVeth},
		}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Merge (-want +got):\n%s", d)
	}
	if local.Ports[3].Members[1] != "Eth3/2" || local.Ports[1].Name != "Eth3/2" {
		t.Errorf("Merge changed its input: %+v", local.Ports)
	}

	// Never welcomed: the local module stays.
	if got, err := vsmlink.Merge(local, vsmlink.Part{}, 7, 0); err != nil || got.Module != 3 || got.Ports[0].Name != "Eth3/1" {
		t.Errorf("Merge(module 0) = %+v, %v; want module 3", got, err)
	}

	for _, tc := range []struct {
		name string
		part vsmlink.Part
		want string
	}{
		{"profile", vsmlink.Part{Profiles: []api.PortProfile{{Name: "fv-uplink"}}}, "port-profile fv-uplink"},
		{"veth", vsmlink.Part{Ports: []api.Port{{Name: "Veth1"}}}, "port Veth1"},
		{"renamed eth", vsmlink.Part{Ports: []api.Port{{Name: "Eth5/3"}}}, "port Eth5/3"},
		{"other nic", vsmlink.Part{Ports: []api.Port{{Name: "Eth5/4"}}}, "port Eth5/4"},
	} {
		_, err := vsmlink.Merge(local, tc.part, 7, 5)
		if !errors.Is(err, vsmlink.ErrCollision) || !errors.Is(err, vem.ErrInvalid) || !contains(err, tc.want) {
			t.Errorf("%s: Merge = %v, want a collision naming %q", tc.name, err, tc.want)
		}
	}
}

func TestPartApply(t *testing.T) {
	p := vsmlink.Snapshot(&api.VSMConfigBody{Full: true, Generation: 1,
		Profiles: []api.PortProfile{{Name: "b"}, {Name: "a"}},
		Ports:    []api.Port{{Name: "Veth2"}, {Name: "Veth1", Owner: "x"}}})
	got := p.Apply(&api.VSMConfigBody{Generation: 2, Base: 1,
		Profiles:       []api.PortProfile{{Name: "c"}},
		Ports:          []api.Port{{Name: "Veth1", Owner: "y"}, {Name: "Veth3"}},
		RemoveProfiles: []string{"b", "nope"}, RemovePorts: []string{"Veth2"}})
	want := vsmlink.Part{
		Profiles: []api.PortProfile{{Name: "a"}, {Name: "c"}},
		Ports:    []api.Port{{Name: "Veth1", Owner: "y"}, {Name: "Veth3"}},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Apply (-want +got):\n%s", d)
	}
	if p.Ports[0].Owner != "x" || len(p.Profiles) != 2 {
		t.Errorf("Apply changed the part it was called on: %+v", p)
	}
}
