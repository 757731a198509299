//go:build fvhost

// Tests that need bridge VLAN filtering, bonding and tc actions (police,
// gact, u32): run inside the emulated host on the image's kernel, e.g.
// go test -tags fvhost -c ./vem && shipped in by qemutest.RunGoTest.

package vem_test

import (
	"context"
	"testing"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/vem"
	"github.com/vishvananda/netlink"
)

func TestFVHostFullProgramming(t *testing.T) {
	inNewNetns(t)
	for _, pair := range [][2]string{{"eth0", "eth0-peer"}, {"eth1", "eth1-peer"}, {"eth2", "eth2-peer"}} {
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: pair[0]}, PeerName: pair[1]}); err != nil {
			t.Fatal(err)
		}
	}
	sc := testConfig()
	sc.Profiles[0].Ingress = &api.RateLimit{BitsPerSecond: 100_000_000}
	sc.Profiles[0].Egress = &api.RateLimit{BitsPerSecond: 50_000_000}
	for _, mode := range []string{api.ChannelMACPinning, api.ChannelLACP, api.ChannelActiveBackup} {
		sc.Ports[5].ChannelMode = mode
		c := mustValidate(t, sc)
		d := vem.Desired(c, vem.Runtime{})
		k := newNetlinkKernel(t)
		reconcileNetns(t, k, d)
		obs, err := k.Observe(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"fvveth1", "fvveth2", "eth0", "fvpo1"} {
			want, got := find(t, d, name), find(t, obs, name)
			if *want.BridgePort != *got.BridgePort {
				t.Errorf("%s (%s): bridge port %+v, want %+v", name, mode, got.BridgePort, want.BridgePort)
			}
			if got.TCKey != want.TC.Key() {
				t.Errorf("%s (%s): tc key %q, want %q", name, mode, got.TCKey, want.TC.Key())
			}
		}
		if b := find(t, obs, "fvpo1").Bond; *b != *find(t, d, "fvpo1").Bond {
			t.Errorf("bond (%s) = %+v", mode, b)
		}
		if len(obs.FDB) != len(d.FDB) {
			t.Errorf("FDB (%s) = %v, want %v", mode, obs.FDB, d.FDB)
		}
	}
}

// Moving ports between VLANs: one VLAN and a range leave, others join (the
// kernel refuses a one-VLAN range on removal; the 1,000-port bench found
// it).
func TestFVHostVLANChange(t *testing.T) {
	inNewNetns(t)
	for _, pair := range [][2]string{{"eth0", "eth0-peer"}, {"eth1", "eth1-peer"}, {"eth2", "eth2-peer"}} {
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: pair[0]}, PeerName: pair[1]}); err != nil {
			t.Fatal(err)
		}
	}
	k := newNetlinkKernel(t)
	sc := testConfig()
	reconcileNetns(t, k, vem.Desired(mustValidate(t, sc), vem.Runtime{}))
	sc.Profiles[0].AccessVLAN = 200     // web: access 100 -> 200
	sc.Profiles[1].AllowedVLANs = "100" // router: 100,200-201 -> 100
	sc.Profiles[1].NativeVLAN = 100
	d := vem.Desired(mustValidate(t, sc), vem.Runtime{})
	reconcileNetns(t, k, d)
	obs, err := k.Observe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"fvveth1", "fvveth2"} {
		if want, got := find(t, d, name).BridgePort, find(t, obs, name).BridgePort; *want != *got {
			t.Errorf("%s: bridge port %+v, want %+v", name, got, want)
		}
	}
}
