package vsm_test

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/vsm"
	"github.com/flashvisor/flashvisor/vsm/igmp"
	"github.com/flashvisor/flashvisor/vsm/vsmtest"
)

// igmpFrame is an IGMP message of typ for group in IPv4 and Ethernet,
// tagged with vlan when non-zero, checksums set.
func igmpFrame(vlan int, typ, code byte, group string) []byte {
	a := netip.MustParseAddr(group).As4()
	g := []byte{typ, code, 0, 0, a[0], a[1], a[2], a[3]}
	binary.BigEndian.PutUint16(g[2:], igmp.Checksum(g))
	ip := []byte{0x45, 0, 0, 28, 0, 0, 0, 0, 1, 2, 0, 0, 10, 0, 0, 7, a[0], a[1], a[2], a[3]}
	binary.BigEndian.PutUint16(ip[10:], igmp.Checksum(ip))
	b := []byte{0x01, 0x00, 0x5e, a[1] & 0x7f, a[2], a[3], 0x02, 0, 0, 0, 0, 7}
	if vlan != 0 {
		b = append(b, 0x81, 0x00, byte(vlan>>8), byte(vlan))
	}
	b = append(b, 0x08, 0x00)
	return append(append(b, ip...), g...)
}

func TestIGMPSnooping(t *testing.T) {
	now := &fakeNow{t: time.Now()}
	in := start(t, t.TempDir(), func(o *vsm.Options) { o.Now = now.Now })
	in.cli(t, uplinkProfile...)
	in.cli(t, webProfile...)
	a, _ := in.join(t, hostA, 3, api.VSMUplink{Interface: "eth1", Profile: "uplink"})
	b, _ := in.join(t, hostB, 4, api.VSMUplink{Interface: "eth1", Profile: "uplink"})
	a.Send(api.VSMMessage{Type: api.VSMAttach, Attach: &api.VSMAttachBody{RequestID: 1, Owner: "vm:web01/nic0", Profile: "web", MAC: "02:00:00:00:00:01"}})
	if res, err := a.Expect(api.VSMAttachResult, wait); err != nil || res.AttachResult.Port != "Veth1" {
		t.Fatalf("attach: %+v, %v", res, err)
	}
	frame := func(v *vsmtest.VEM, port string, data []byte) {
		t.Helper()
		if err := v.Send(api.VSMMessage{Type: api.VSMFrame, Frame: &api.VSMFrameBody{Port: port, Data: data}}); err != nil {
			t.Fatal(err)
		}
	}
	// web01 (access VLAN 100, untagged) joins 239.1.1.1; a querier and a
	// receiver behind host B's uplink, tagged 100.
	frame(a, "Veth1", igmpFrame(0, 0x16, 0, "239.1.1.1"))
	frame(b, "Eth4/2", igmpFrame(100, 0x11, 100, "0.0.0.0"))
	frame(b, "Eth4/2", igmpFrame(100, 0x16, 0, "239.1.1.1"))
	frame(a, "Eth3/2", igmpFrame(200, 0x12, 0, "239.9.9.9"))
	// Not kept: a link-local group, a vEth of another module, a port
	// that does not exist, an access port's tagged frame, a bad checksum.
	frame(a, "Veth1", igmpFrame(0, 0x16, 0, "224.0.0.251"))
	frame(b, "Veth1", igmpFrame(0, 0x16, 0, "239.5.5.5"))
	frame(a, "Veth9", igmpFrame(0, 0x16, 0, "239.5.5.6"))
	frame(a, "Veth1", igmpFrame(300, 0x16, 0, "239.5.5.7"))
	bad := igmpFrame(0, 0x16, 0, "239.5.5.8")
	bad[len(bad)-1] ^= 1
	frame(a, "Veth1", bad)

	waitFor(t, func() bool { return len(in.s.IGMPGroups()) == 3 }, "three IGMP snooping entries")
	out := in.cli(t, "show ip igmp snooping groups")
	for _, want := range []string{
		"Vlan  Group Address      Ver  Type  Port list\n",
		"100   */*                v2   R     Eth4/2\n",
		"100   239.1.1.1          v2   D     Eth4/2 Veth1\n",
		"200   239.9.9.9          v1   D     Eth3/2\n",
		"Total number of groups: 2\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("show ip igmp snooping groups lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "239.5.5.") || strings.Contains(out, "224.0.0.251") {
		t.Errorf("show ip igmp snooping groups lists a refused report:\n%s", out)
	}
	if out := in.cli(t, "show ip igmp snooping groups vlan 200"); strings.Contains(out, "239.1.1.1") || !strings.Contains(out, "239.9.9.9") {
		t.Errorf("show ip igmp snooping groups vlan 200:\n%s", out)
	}

	// A leave takes the port out at once; memberships expire 260 s after
	// the last report.
	frame(a, "Veth1", igmpFrame(0, 0x17, 0, "239.1.1.1"))
	waitFor(t, func() bool {
		for _, g := range in.s.IGMPGroups() {
			if g.Group.String() == "239.1.1.1" && len(g.Ports) == 1 && g.Ports[0] == "Eth4/2" {
				return true
			}
		}
		return false
	}, "Veth1 out of 239.1.1.1")
	now.Add(261 * time.Second)
	if gs := in.s.IGMPGroups(); len(gs) != 0 {
		t.Errorf("after 261 s: %+v, want nothing", gs)
	}
	// The connections survived the bad frames.
	a.Send(api.VSMMessage{Type: api.VSMResync})
	if _, err := a.Expect(api.VSMConfigMsg, wait); err != nil {
		t.Fatalf("after bad frames: %v", err)
	}
}

// A module that leaves the chassis (silent for the dead interval) takes
// its snooping entries with it.
func TestIGMPForgetsALeavingModule(t *testing.T) {
	in := start(t, t.TempDir(), nil)
	in.cli(t, uplinkProfile...)
	a, _ := in.join(t, hostA, 3, api.VSMUplink{Interface: "eth1", Profile: "uplink"})
	b, _ := in.join(t, hostB, 4, api.VSMUplink{Interface: "eth1", Profile: "uplink"})
	for _, f := range []struct {
		v    *vsmtest.VEM
		port string
	}{{a, "Eth3/2"}, {b, "Eth4/2"}} {
		if err := f.v.Send(api.VSMMessage{Type: api.VSMFrame, Frame: &api.VSMFrameBody{Port: f.port, Data: igmpFrame(100, 0x16, 0, "239.1.1.1")}}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool { gs := in.s.IGMPGroups(); return len(gs) == 1 && len(gs[0].Ports) == 2 }, "239.1.1.1 on both uplinks")
	b.Silence()
	waitFor(t, func() bool {
		gs := in.s.IGMPGroups()
		return len(gs) == 1 && len(gs[0].Ports) == 1 && gs[0].Ports[0] == "Eth3/2"
	}, "module 4's entry gone with it")
}
