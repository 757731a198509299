package cdp_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/flashvisor/flashvisor/vem/cdp"
)

// cdpFrame is a minimal CDPv2 frame from src (checksum not set).
func cdpFrame(src byte, protocol uint16) []byte {
	pdu := []byte{2, 180, 0, 0, 0, 1, 0, 6, 's', 'w'}
	b := append([]byte{}, cdp.Multicast...)
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
		{"short", cdp.Multicast, false},
		{"header only", cdpFrame(1, 0x2000)[:20], false},
	} {
		if got := cdp.Match(tc.frame); got != tc.want {
			t.Errorf("Match(%s) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func FuzzMatch(f *testing.F) {
	f.Add(cdpFrame(1, 0x2000))
	f.Fuzz(func(t *testing.T, b []byte) { cdp.Match(b) })
}

// TestCaptureOnBridgePort sends frames into a veth whose peer is a bridge
// port and checks that Capture on the peer sees the CDP frame only.
func TestCaptureOnBridgePort(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New() // the thread is in ns from here
	if err != nil {
		t.Skipf("cannot create a network namespace: %v", err)
	}
	defer func() {
		netns.Set(orig)
		ns.Close()
	}()
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
		done <- cdp.Capture{}.Run(ctx, "up0", func(f []byte) { got <- bytes.Clone(f) })
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
	want := cdpFrame(1, 0x2000)
	deadline := time.After(5 * time.Second)
	for {
		// Until the capture is up, frames are lost: send until one comes.
		send(cdpFrame(2, 0x2003)) // VTP: filtered
		send(want)
		select {
		case f := <-got:
			if !bytes.Equal(f, want) {
				t.Fatalf("captured % x, want % x", f, want)
			}
			return
		case err := <-done:
			t.Fatalf("Run = %v", err)
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatal("no CDP frame captured in 5 s")
		}
	}
}
