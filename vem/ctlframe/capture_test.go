package ctlframe_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/flashvisor/flashvisor/internal/netnstest"
	"github.com/flashvisor/flashvisor/vem/ctlframe"
)

// cdpFrame is a minimal CDPv2 frame from src (checksum not set).
func cdpFrame(src byte, protocol uint16) []byte {
	pdu := []byte{2, 180, 0, 0, 0, 1, 0, 6, 's', 'w'}
	b := append([]byte{}, ctlframe.Multicast...)
	b = append(b, 0x02, 0, 0, 0, 0, src)
	b = binary.BigEndian.AppendUint16(b, uint16(8+len(pdu)))
	b = append(b, 0xaa, 0xaa, 0x03, 0x00, 0x00, 0x0c)
	b = binary.BigEndian.AppendUint16(b, protocol)
	b = append(b, pdu...)
	for len(b) < 60 {
		b = append(b, 0)
	}
	return b
}

func TestMatch(t *testing.T) {
	tagged := cdpFrame(1, 0x2000)
	tagged = append(tagged[:12:12], append([]byte{0x81, 0x00, 0x00, 0x0a}, tagged[12:]...)...)
	ipv4 := cdpFrame(1, 0x2000)
	ipv4[12], ipv4[13] = 0x08, 0x00
	other := cdpFrame(1, 0x2000)
	other[0] = 0xff
	for _, tc := range []struct {
		name  string
		frame []byte
		want  bool
	}{
		{"CDP", cdpFrame(1, 0x2000), true},
		{"tagged CDP", tagged, true},
		{"VTP", cdpFrame(1, 0x2003), false},
		{"EtherType", ipv4, false},
		{"other destination", other, false},
		{"short", ctlframe.Multicast, false},
		{"header only", cdpFrame(1, 0x2000)[:20], false},
	} {
		if got := ctlframe.MatchCDP(tc.frame); got != tc.want {
			t.Errorf("Match(%s) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// igmpFrame is an IGMPv2 membership report for 239.1.1.1 from src
// (checksums not set: the VSM checks them, not the capture).
func igmpFrame(src byte) []byte {
	b := []byte{0x01, 0x00, 0x5e, 0x01, 0x01, 0x01, 0x02, 0, 0, 0, 0, src, 0x08, 0x00}
	b = append(b, 0x46, 0, 0, 32, 0, 0, 0, 0, 1, 2, 0, 0, 10, 0, 0, src, 239, 1, 1, 1, 0x94, 4, 0, 0) // IPv4 + router alert
	b = append(b, 0x16, 0, 0, 0, 239, 1, 1, 1)
	for len(b) < 60 {
		b = append(b, 0)
	}
	return b
}

func tag(frame []byte, vlan uint16) []byte {
	return append(append(frame[:12:12], 0x81, 0x00, byte(vlan>>8), byte(vlan)), frame[12:]...)
}

func TestMatchIGMP(t *testing.T) {
	udp := igmpFrame(1)
	udp[14+9] = 17
	v6 := igmpFrame(1)
	v6[14] = 0x66
	for _, tc := range []struct {
		name  string
		frame []byte
		want  bool
	}{
		{"report", igmpFrame(1), true},
		{"tagged report", tag(igmpFrame(1), 100), true},
		{"udp", udp, false},
		{"not IPv4", v6, false},
		{"cdp", cdpFrame(1, 0x2000), false},
		{"short", igmpFrame(1)[:30], false},
	} {
		if got := ctlframe.MatchIGMP(tc.frame); got != tc.want {
			t.Errorf("%s: MatchIGMP = %v, want %v", tc.name, got, tc.want)
		}
	}
	if ctlframe.MatchCDP(igmpFrame(1)) {
		t.Error("MatchCDP(an IGMP frame) = true")
	}
}

func FuzzMatch(f *testing.F) {
	f.Add(cdpFrame(1, 0x2000))
	f.Add(igmpFrame(1))
	f.Fuzz(func(t *testing.T, b []byte) { ctlframe.MatchCDP(b); ctlframe.MatchIGMP(b) })
}

// TestCaptureOnBridgePort sends frames into a veth whose peer is a bridge
// port and checks that Capture on the peer sees the CDP frame only.
func TestCaptureOnBridgePort(t *testing.T) {
	ns := netnstest.Enter(t)
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "up0"}, PeerName: "wire0"}
	for _, step := range []func() error{
		func() error { return netlink.LinkAdd(br) },
		func() error { return netlink.LinkAdd(veth) },
		func() error { return netlink.LinkSetMaster(veth, br) },
		func() error { return netlink.LinkSetUp(br) },
		func() error { return netlink.LinkSetUp(veth) },
		func() error { l, _ := netlink.LinkByName("wire0"); return netlink.LinkSetUp(l) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	wire, err := netlink.LinkByName("wire0")
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan []byte, 10)
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // stays in ns; the thread dies with it
		if err := netns.Set(ns); err != nil {
			done <- err
			return
		}
		done <- ctlframe.Capture{}.Run(ctx, "up0", func(f []byte) { got <- bytes.Clone(f) })
	}()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v, want nil after cancel", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
	}()

	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	send := func(frame []byte) {
		t.Helper()
		if err := unix.Sendto(fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: wire.Attrs().Index, Halen: 6}); err != nil {
			t.Fatal(err)
		}
	}
	// Until the capture is up, frames are lost: send until one comes.
	var earlier [][]byte
	expect := func(want, sent []byte, what string) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			send(cdpFrame(2, 0x2003)) // VTP: filtered
			udp := igmpFrame(3)
			udp[14+9] = 17 // UDP: filtered
			send(udp)
			send(sent)
			select {
			case f := <-got:
				if bytes.Equal(f, want) {
					earlier = append(earlier, want)
					return
				}
				// More copies of an earlier frame may still be on their way.
				if !slices.ContainsFunc(earlier, func(e []byte) bool { return bytes.Equal(e, f) }) {
					t.Fatalf("%s: captured % x, want % x", what, f, want)
				}
			case err := <-done:
				t.Fatalf("Run = %v", err)
			case <-time.After(100 * time.Millisecond):
			case <-deadline:
				t.Fatalf("%s: nothing captured in 5 s", what)
			}
		}
	}
	expect(cdpFrame(1, 0x2000), cdpFrame(1, 0x2000), "CDP")
	expect(igmpFrame(1), igmpFrame(1), "IGMP")
	// The kernel takes the tag off before packet sockets see the frame;
	// the capture puts it back.
	expect(tag(igmpFrame(1), 100), tag(igmpFrame(1), 100), "tagged IGMP")
}
