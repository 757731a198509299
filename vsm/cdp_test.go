package vsm_test

import (
	"encoding/binary"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/vsm"
	"github.com/flashvisor/flashvisor/vsm/vsmtest"
)

// cdpFrame is a CDPv2 frame from device on port (checksum not set: the
// VSM does not check it).
func cdpFrame(device, port, platform string, holdtime byte) []byte {
	pdu := []byte{2, holdtime, 0, 0}
	tlv := func(typ uint16, v []byte) {
		pdu = binary.BigEndian.AppendUint16(pdu, typ)
		pdu = binary.BigEndian.AppendUint16(pdu, uint16(4+len(v)))
		pdu = append(pdu, v...)
	}
	tlv(1, []byte(device))
	tlv(3, []byte(port))
	tlv(4, []byte{0, 0, 0, 0x28}) // S I
	tlv(6, []byte(platform))
	b := []byte{0x01, 0x00, 0x0c, 0xcc, 0xcc, 0xcc, 0x02, 0, 0, 0, 0, 1}
	b = binary.BigEndian.AppendUint16(b, uint16(8+len(pdu)))
	b = append(b, 0xaa, 0xaa, 0x03, 0x00, 0x00, 0x0c, 0x20, 0x00)
	return append(b, pdu...)
}

// fakeNow is a wall clock a test moves.
type fakeNow struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeNow) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeNow) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestCDPNeighbors(t *testing.T) {
	now := &fakeNow{t: time.Now()}
	in := start(t, t.TempDir(), func(o *vsm.Options) { o.Now = now.Now })
	in.cli(t, uplinkProfile...)
	a, _ := in.join(t, hostA, 3, api.VSMUplink{Interface: "eth1", Profile: "uplink"})
	b, _ := in.join(t, hostB, 4, api.VSMUplink{Interface: "eth1", Profile: "uplink"})

	frame := func(v *vsmtest.VEM, port string, data []byte) {
		t.Helper()
		if err := v.Send(api.VSMMessage{Type: api.VSMFrame, Frame: &api.VSMFrameBody{Port: port, Data: data}}); err != nil {
			t.Fatal(err)
		}
	}
	frame(a, "Eth3/2", cdpFrame("core-sw1", "GigabitEthernet0/2", "WS-C2960G-48T", 180))
	frame(b, "Eth4/2", cdpFrame("core-sw2", "Gig0/3", "WS-C2960G-48T", 30))
	// Not kept: another module's port, not CDP, malformed.
	frame(b, "Eth3/5", cdpFrame("liar", "Gig0/9", "x", 180))
	frame(a, "Eth3/2", make([]byte, 60))
	frame(a, "Eth3/2", cdpFrame("", "Gig0/1", "x", 180))

	waitFor(t, func() bool { return len(in.s.CDPNeighbors()) == 2 }, "two CDP neighbors")
	out := in.cli(t, "show cdp neighbors")
	for _, want := range []string{
		"core-sw1            Eth3/2         180    S I       WS-C2960G-48T GigabitEthernet0/2\n",
		"core-sw2            Eth4/2         30     S I       WS-C2960G-48T Gig0/3\n",
		"Total entries displayed: 2\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("show cdp neighbors lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "liar") {
		t.Errorf("show cdp neighbors lists a neighbor claimed on another module's port:\n%s", out)
	}
	// The connections survived the bad frames.
	a.Send(api.VSMMessage{Type: api.VSMResync})
	if _, err := a.Expect(api.VSMConfigMsg, wait); err != nil {
		t.Fatalf("after bad frames: %v", err)
	}

	// core-sw2 expires after its 30 s; core-sw1 counts down.
	now.Add(31 * time.Second)
	ns := in.s.CDPNeighbors()
	if len(ns) != 1 || ns[0].Neighbor.DeviceID != "core-sw1" || ns[0].Module != 3 || ns[0].Port != "Eth3/2" || ns[0].Holdtime != 149 {
		t.Errorf("after 31 s: CDPNeighbors() = %+v, want core-sw1 on module 3 Eth3/2 with 149 s left", ns)
	}
	// A newer frame refreshes the holdtime; holdtime 0 forgets the device.
	frame(a, "Eth3/2", cdpFrame("core-sw1", "GigabitEthernet0/2", "WS-C2960G-48T", 180))
	waitFor(t, func() bool { ns := in.s.CDPNeighbors(); return len(ns) == 1 && ns[0].Holdtime == 180 }, "refreshed holdtime")
	frame(a, "Eth3/2", cdpFrame("core-sw1", "GigabitEthernet0/2", "WS-C2960G-48T", 0))
	waitFor(t, func() bool { return len(in.s.CDPNeighbors()) == 0 }, "core-sw1 forgotten on holdtime 0")
	if out := in.cli(t, "show cdp neighbors"); !strings.Contains(out, "Total entries displayed: 0") {
		t.Errorf("show cdp neighbors at the end:\n%s", out)
	}
}
