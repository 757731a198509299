package vsm_test

import (
	"bytes"
	"context"
	"net"
	"testing"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/internal/pktchan"
	"github.com/flashvisor/flashvisor/vsm"
)

// packetSource is a fake packet vNIC: the test hands it payloads.
type packetSource chan []byte

func (p packetSource) Run(ctx context.Context, fn func([]byte)) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case b := <-p:
			fn(b)
		}
	}
}

// TestPacketChannel: frames relayed on the packet VLAN (svs mode L2) are
// taken in when they carry the module's connection key and a fresh
// sequence number, and dropped and counted otherwise.
func TestPacketChannel(t *testing.T) {
	src := make(packetSource)
	mac := net.HardwareAddr{0x00, 0x50, 0x56, 0x01, 0x02, 0x03}
	in := start(t, t.TempDir(), func(o *vsm.Options) { o.Packet, o.PacketMAC = src, mac })
	in.cli(t, uplinkProfile...)
	a, _ := in.join(t, hostA, 3, api.VSMUplink{Interface: "eth1", Profile: "uplink"})
	if in.welcome.PacketMAC != mac.String() {
		t.Errorf("welcome packet_mac %q, want %s", in.welcome.PacketMAC, mac)
	}
	key, err := a.PacketKey()
	if err != nil {
		t.Fatal(err)
	}
	send := func(f pktchan.Frame, key []byte) {
		t.Helper()
		b, err := pktchan.Append(nil, f, key)
		if err != nil {
			t.Fatal(err)
		}
		src <- b
	}
	frame := func(seq uint64, device string) pktchan.Frame {
		return pktchan.Frame{Domain: 100, Module: 3, Seq: seq, Port: "Eth3/2", Data: cdpFrame(device, "Gig0/2", "WS-C2960G-48T", 180)}
	}
	send(frame(1, "core-sw1"), key)
	waitFor(t, func() bool { return len(in.s.CDPNeighbors()) == 1 }, "core-sw1 from the packet VLAN")
	before := in.s.Health()

	other := bytes.Repeat([]byte{1}, pktchan.KeyLen)
	send(frame(1, "replayed"), key) // seq not above the last
	send(frame(2, "forged"), other) // another key
	f := frame(3, "no-such-module") // a module not connected
	f.Module = 5
	send(f, key)
	src <- []byte("FVPC\x01\x01junk") // malformed
	f = frame(4, "foreign")           // another domain
	f.Domain = 28
	send(f, key)
	send(frame(5, "core-sw2"), key) // good again (gaps are fine)
	waitFor(t, func() bool { return len(in.s.CDPNeighbors()) == 2 }, "core-sw2 from the packet VLAN")
	for _, n := range in.s.CDPNeighbors() {
		if d := n.Neighbor.DeviceID; d != "core-sw1" && d != "core-sw2" {
			t.Errorf("learned %s from a frame that should have been dropped", d)
		}
	}
	h := in.s.Health()
	if h.PacketFrames != 2 || h.PacketDropped-before.PacketDropped != 4 || h.ForeignDomain-before.ForeignDomain != 1 {
		t.Errorf("health packet_frames %d, packet_dropped +%d, foreign_domain +%d; want 2, +4, +1",
			h.PacketFrames, h.PacketDropped-before.PacketDropped, h.ForeignDomain-before.ForeignDomain)
	}

	// A reconnect is a new TLS session: the old key stops working.
	a.Close()
	waitFor(t, func() bool { return in.s.Health().Modules == 0 }, "module 3 gone")
	b, _ := in.join(t, hostA, 3, api.VSMUplink{Interface: "eth1", Profile: "uplink"})
	send(frame(6, "old-key"), key)
	key2, err := b.PacketKey()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(key, key2) {
		t.Fatal("the new connection has the old key")
	}
	send(frame(1, "new-key"), key2)
	waitFor(t, func() bool { return in.s.Health().PacketFrames == 3 }, "a frame with the new key")
	for _, n := range in.s.CDPNeighbors() {
		if n.Neighbor.DeviceID == "old-key" {
			t.Error("a frame with the last connection's key was taken")
		}
	}
}
