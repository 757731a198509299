package vsmlink_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/vem/vsmlink"
	"github.com/flashvisor/flashvisor/vem/vsmlink/vsmlinktest"
)

// cdpFrame is a small CDPv2 frame from device.
func cdpFrame(device string) []byte {
	pdu := []byte{2, 180, 0, 0}
	pdu = binary.BigEndian.AppendUint16(pdu, 1)
	pdu = binary.BigEndian.AppendUint16(pdu, uint16(4+len(device)))
	pdu = append(pdu, device...)
	b := []byte{0x01, 0x00, 0x0c, 0xcc, 0xcc, 0xcc, 0x02, 0, 0, 0, 0, 1}
	b = binary.BigEndian.AppendUint16(b, uint16(8+len(pdu)))
	b = append(b, 0xaa, 0xaa, 0x03, 0x00, 0x00, 0x0c, 0x20, 0x00)
	b = append(b, pdu...)
	for len(b) < 60 {
		b = append(b, 0)
	}
	return b
}

// igmpReport is an IGMPv2 report for 239.1.1.n.
func igmpReport(n byte) []byte {
	b := []byte{0x01, 0x00, 0x5e, 0x01, 0x01, n, 0x02, 0, 0, 0, 0, 9, 0x08, 0x00}
	b = append(b, 0x45, 0, 0, 28, 0, 0, 0, 0, 1, 2, 0, 0, 10, 0, 0, 9, 239, 1, 1, n)
	b = append(b, 0x16, 0, 0, 0, 239, 1, 1, n)
	for len(b) < 60 {
		b = append(b, 0)
	}
	return b
}

func TestFrameRelay(t *testing.T) {
	frames := &vsmlinktest.Frames{Fail: map[string]error{"eth0": errors.New("no CAP_NET_RAW")}}
	f := newFixture(t, func(o *vsmlink.Options) { o.Frames = frames; o.FrameInterval = time.Hour; o.CaptureVeths = true })
	f.joined()
	time.Sleep(50 * time.Millisecond)
	if r := frames.Running(); len(r) != 0 {
		t.Errorf("captures before the VSM welcomed us: %v", r)
	}
	c, _ := f.connect(5, 1)
	if ack := f.config(c, snapshot(5, 1)); ack.Error != "" {
		t.Fatalf("ack = %+v", ack)
	}
	// Eth5/2 is eth1 (the VSM's uplink), Veth10 fvveth10; eth0 (Eth5/1,
	// local) fails; the local Veth1 (vmk0) is not the VSM's.
	eventually(t, "captures on eth1 and fvveth10", func() bool {
		return slices.Equal(frames.Running(), []string{"eth1", "fvveth10"})
	})

	// Not CDP: not relayed. CDP: relayed as Eth5/2's. The next one within
	// FrameInterval: dropped.
	other := cdpFrame("sw")
	other[21] = 0x03 // VTP
	frames.Inject("eth1", other)
	want := cdpFrame("core-sw1")
	frames.Inject("eth1", want)
	frames.Inject("eth1", cdpFrame("core-sw1 again"))
	m := c.Expect(t, api.VSMFrame, wait)
	if m.Frame.Port != "Eth5/2" || !bytes.Equal(m.Frame.Data, want) {
		t.Errorf("frame message = port %s data % x, want Eth5/2 % x", m.Frame.Port, m.Frame.Data, want)
	}
	// The link carries on, and nothing more was relayed: Expect fails on
	// a frame message before the ack.
	c.Send(t, api.VSMMessage{Type: api.VSMConfigMsg, Config: &api.VSMConfigBody{Generation: 2, Base: 1, Ports: []api.Port{veth(11)}}})
	if ack := c.Expect(t, api.VSMAck, wait).Ack; ack.Generation != 2 || ack.Error != "" {
		t.Errorf("ack after the frames = %+v", ack)
	}
	// IGMP is relayed from every port, CDP only from uplinks.
	frames.Inject("fvveth10", cdpFrame("vm-pretending"))
	report := igmpReport(1)
	frames.Inject("fvveth10", report)
	m = c.Expect(t, api.VSMFrame, wait)
	if m.Frame.Port != "Veth10" || !bytes.Equal(m.Frame.Data, report) {
		t.Errorf("frame message = port %s data % x, want Veth10 % x", m.Frame.Port, m.Frame.Data, report)
	}
	// A burst: igmpBurst (16) relayed, the rest dropped (no refill within
	// the hour-long FrameInterval); the first of the burst was sent above.
	for i := 2; i <= 30; i++ {
		frames.Inject("fvveth10", igmpReport(byte(i)))
	}
	for i := 2; i <= 16; i++ {
		m = c.Expect(t, api.VSMFrame, wait)
		if want := igmpReport(byte(i)); m.Frame.Port != "Veth10" || !bytes.Equal(m.Frame.Data, want) {
			t.Fatalf("burst frame %d = port %s data % x, want Veth10 % x", i, m.Frame.Port, m.Frame.Data, want)
		}
	}
	c.Send(t, api.VSMMessage{Type: api.VSMConfigMsg, Config: &api.VSMConfigBody{Generation: 3, Base: 2, Ports: []api.Port{veth(12)}}})
	if ack := c.Expect(t, api.VSMAck, wait).Ack; ack.Generation != 3 || ack.Error != "" {
		t.Errorf("ack after the IGMP burst = %+v (more than 16 frames relayed?)", ack)
	}

	if n := strings.Count(f.log.String(), `level=WARN msg="frame capture failed`); n != 1 {
		t.Errorf("capture failure logged %d times at warn level, want 1:\n%s", n, f.log.String())
	}

	// The VSM goes away: the captures stop with the session.
	c.Close()
	eventually(t, "captures stopped", func() bool { return len(frames.Running()) == 0 })
	if frames.Inject("eth1", want) {
		t.Error("a capture still runs while headless")
	}
}

// Without CaptureVeths only the uplinks are captured (vemd's default).
func TestFrameRelayUplinksOnly(t *testing.T) {
	frames := &vsmlinktest.Frames{}
	f := newFixture(t, func(o *vsmlink.Options) { o.Frames = frames })
	f.joined()
	c, _ := f.connect(5, 1)
	if ack := f.config(c, snapshot(5, 1)); ack.Error != "" {
		t.Fatalf("ack = %+v", ack)
	}
	eventually(t, "captures on the uplinks", func() bool { return slices.Equal(frames.Running(), []string{"eth0", "eth1"}) })
	time.Sleep(50 * time.Millisecond)
	if r := frames.Running(); !slices.Equal(r, []string{"eth0", "eth1"}) {
		t.Errorf("captures = %v, want the uplinks only", r)
	}
}
