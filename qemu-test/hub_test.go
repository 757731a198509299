package qemutest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestReadFrames(t *testing.T) {
	frame := func(n int, fill byte) []byte { return bytes.Repeat([]byte{fill}, n) }
	for _, tc := range []struct {
		name    string
		stream  []byte
		want    [][]byte
		wantErr string // "" for a clean end
	}{
		{"empty", nil, nil, ""},
		{"two frames", appendFrame(appendFrame(nil, frame(60, 1)), frame(1514, 2)), [][]byte{frame(60, 1), frame(1514, 2)}, ""},
		{"zero length skipped", appendFrame(appendFrame(nil, nil), frame(3, 7)), [][]byte{frame(3, 7)}, ""},
		{"largest", appendFrame(nil, frame(MaxHubFrame, 9)), [][]byte{frame(MaxHubFrame, 9)}, ""},
		{"too long", binary.BigEndian.AppendUint32(nil, MaxHubFrame+1), nil, "out of step"},
		{"cut in the frame", appendFrame(nil, frame(10, 1))[:8], nil, "cut short"},
		{"cut in the prefix", append(appendFrame(nil, frame(10, 1)), 0, 0), [][]byte{frame(10, 1)}, "unexpected EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got [][]byte
			err := readFrames(bytes.NewReader(tc.stream), func(f []byte) { got = append(got, f) })
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("readFrames() error = %v, want %q", err, tc.wantErr)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("readFrames() gave %d frames, want %d", len(got), len(tc.want))
			}
			for i := range got {
				if !bytes.Equal(got[i], tc.want[i]) {
					t.Errorf("frame %d: %d bytes, want %d", i, len(got[i]), len(tc.want[i]))
				}
			}
		})
	}
}

// hubClient is a station speaking QEMU's framing to a hub.
type hubClient struct {
	t    *testing.T
	conn net.Conn
}

// join connects a client and waits until the hub has n ports, so that the
// clients' port numbers follow the order of the joins.
func join(t *testing.T, h *Hub, n int) *hubClient {
	t.Helper()
	conn, err := net.Dial("tcp", h.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	deadline := time.Now().Add(5 * time.Second)
	for h.Stats().Ports != n {
		if time.Now().After(deadline) {
			t.Fatalf("hub has %d ports, want %d", h.Stats().Ports, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return &hubClient{t: t, conn: conn}
}

func (c *hubClient) send(f []byte) {
	c.t.Helper()
	if _, err := c.conn.Write(appendFrame(nil, f)); err != nil {
		c.t.Fatal(err)
	}
}

// recv reads one frame within a second.
func (c *hubClient) recv() ([]byte, error) {
	c.conn.SetReadDeadline(time.Now().Add(time.Second))
	var hdr [4]byte
	if _, err := io.ReadFull(c.conn, hdr[:]); err != nil {
		return nil, err
	}
	f := make([]byte, binary.BigEndian.Uint32(hdr[:]))
	_, err := io.ReadFull(c.conn, f)
	return f, err
}

func (c *hubClient) mustRecv(want []byte) {
	c.t.Helper()
	got, err := c.recv()
	if err != nil || !bytes.Equal(got, want) {
		c.t.Fatalf("recv() = %q, %v; want %q", got, err, want)
	}
}

// silent checks that nothing arrives for a moment.
func (c *hubClient) silent() {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	var b [1]byte
	if n, err := c.conn.Read(b[:]); n > 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		c.t.Fatalf("read = %d bytes, %v; want nothing (deadline)", n, err)
	}
}

func newTestHub(t *testing.T) *Hub {
	h, err := NewHub(t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func TestHubForwardsToOtherPorts(t *testing.T) {
	h := newTestHub(t)
	a, b, c := join(t, h, 1), join(t, h, 2), join(t, h, 3)

	a.send([]byte("from a"))
	b.mustRecv([]byte("from a"))
	c.mustRecv([]byte("from a"))
	a.silent() // never back to the sender
	c.send([]byte("from c"))
	a.mustRecv([]byte("from c"))
	b.mustRecv([]byte("from c"))
	c.silent()

	if err := h.Inject([]byte("from the test")); err != nil {
		t.Fatal(err)
	}
	for _, x := range []*hubClient{a, b, c} {
		x.mustRecv([]byte("from the test"))
	}

	type rec struct {
		Seq, Port int
		Data      string
	}
	var got []rec
	for _, f := range h.Frames() {
		got = append(got, rec{f.Seq, f.Port, string(f.Data)})
	}
	want := []rec{{1, 1, "from a"}, {2, 3, "from c"}, {3, InjectedPort, "from the test"}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Frames() mismatch (-want +got):\n%s", d)
	}
	if got := h.FramesSince(2); len(got) != 2 || got[0].Seq != 2 {
		t.Errorf("FramesSince(2) = %v, want frames 2 and 3", got)
	}
	if st := h.Stats(); st != (HubStats{Ports: 3, Frames: 2}) {
		t.Errorf("Stats() = %+v, want 3 ports, 2 frames from ports", st)
	}
}

func TestHubWaitFrame(t *testing.T) {
	h := newTestHub(t)
	a, _ := join(t, h, 1), join(t, h, 2)
	a.send([]byte("old"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := h.WaitFrame(ctx, 0, func(f Frame) bool { return string(f.Data) == "old" }); err != nil {
		t.Fatal(err)
	}
	mark := h.Mark()
	go func() {
		time.Sleep(50 * time.Millisecond)
		a.conn.Write(appendFrame(nil, []byte("new")))
	}()
	f, err := h.WaitFrame(ctx, mark, func(Frame) bool { return true })
	if err != nil || string(f.Data) != "new" || f.Port != 1 {
		t.Fatalf("WaitFrame(since mark) = %+v, %v; want the new frame from port 1", f, err)
	}
	short, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	if _, err := h.WaitFrame(short, 0, func(f Frame) bool { return string(f.Data) == "never" }); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitFrame(no match) = %v, want the context's deadline", err)
	}
}

func TestHubDropsPortOutOfStep(t *testing.T) {
	h := newTestHub(t)
	bad, good, other := join(t, h, 1), join(t, h, 2), join(t, h, 3)
	if _, err := bad.conn.Write(binary.BigEndian.AppendUint32(nil, 1<<30)); err != nil {
		t.Fatal(err)
	}
	if _, err := bad.recv(); err == nil {
		t.Errorf("the port out of step is still connected")
	}
	good.send([]byte("still works"))
	other.mustRecv([]byte("still works"))
	if st := h.Stats(); st.Ports != 2 {
		t.Errorf("Stats().Ports = %d, want 2 after one port was dropped", st.Ports)
	}
}

func TestHubPortLeaves(t *testing.T) {
	h := newTestHub(t)
	a, b := join(t, h, 1), join(t, h, 2)
	a.conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	for h.Stats().Ports != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("port of a closed connection still counted: %+v", h.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	c := join(t, h, 2)
	b.send([]byte("after"))
	c.mustRecv([]byte("after"))
	if st := h.Stats(); st.Dropped != 0 {
		t.Errorf("Stats().Dropped = %d, want 0", st.Dropped)
	}
}

func TestHubClose(t *testing.T) {
	h, err := NewHub(nil)
	if err != nil {
		t.Fatal(err)
	}
	a, b := join(t, h, 1), join(t, h, 2)
	waiting := make(chan error, 1)
	go func() {
		_, err := h.WaitFrame(context.Background(), 0, func(Frame) bool { return false })
		waiting <- err
	}()
	if err := h.Close(); err != nil {
		t.Errorf("Close() = %v", err)
	}
	for _, c := range []*hubClient{a, b} {
		if _, err := c.recv(); !errors.Is(err, io.EOF) {
			t.Errorf("a port's read after Close = %v, want EOF", err)
		}
	}
	select {
	case err := <-waiting:
		if err == nil {
			t.Errorf("WaitFrame returned no error at Close")
		}
	case <-time.After(5 * time.Second):
		t.Errorf("WaitFrame still waiting after Close")
	}
	if err := h.Inject([]byte("x")); err == nil {
		t.Errorf("Inject after Close = nil, want an error")
	}
	if _, err := net.DialTimeout("tcp", h.Addr(), time.Second); err == nil {
		t.Errorf("the hub still accepts connections after Close")
	}
	if err := h.Close(); err != nil {
		t.Errorf("second Close() = %v, want nil", err)
	}
}

func TestHubInjectChecks(t *testing.T) {
	h := newTestHub(t)
	if err := h.Inject([]byte("x")); err == nil {
		t.Errorf("Inject without ports = nil, want an error")
	}
	join(t, h, 1)
	for _, n := range []int{0, MaxHubFrame + 1} {
		if err := h.Inject(make([]byte, n)); err == nil {
			t.Errorf("Inject(%d bytes) = nil, want an error", n)
		}
	}
}

func TestHubRecordBounded(t *testing.T) {
	h := newTestHub(t)
	h.mu.Lock()
	big := make([]byte, hubRecordBytes/4+1)
	for range 6 {
		h.record(1, big)
	}
	h.mu.Unlock()
	frames := h.Frames()
	if len(frames) != 3 || frames[0].Seq != 4 || h.Stats().Lost != 3 {
		t.Errorf("after 6 frames of a quarter of the record: %d kept from seq %d, %d lost; want 3 kept from 4, 3 lost",
			len(frames), frames[0].Seq, h.Stats().Lost)
	}
	if m := h.Mark(); m != 7 {
		t.Errorf("Mark() = %d, want 7", m)
	}
}

func TestHubNICArgs(t *testing.T) {
	h := newTestHub(t)
	qemu, argvFile := fakeQEMU(t, `exit 0`)
	rec := newRecordingTB(t)
	vm := Start(rec, "hubhost", WithQEMU(qemu), WithStateDir(t.TempDir()), WithNICModel("e1000"), WithHubNIC(h))
	vm.Wait(ctxFor(t, 10*time.Second))
	rec.runCleanups()
	argv, _ := os.ReadFile(argvFile)
	args := string(argv)
	for _, want := range []string{
		"user,id=net0\n-device\ne1000,netdev=net0,mac=" + vm.MAC(0) + "\n",
		"socket,id=net1,connect=" + h.Addr() + "\n-device\nvirtio-net-pci,netdev=net1,mac=" + vm.MAC(1) + "\n",
	} {
		if !strings.Contains(args, "-netdev\n"+want) {
			t.Errorf("argv lacks\n%s\nin\n%s", want, args)
		}
	}
	if vm.MAC(1) != macFor("hubhost", 1) || vm.MAC(0) == vm.MAC(1) || !strings.HasPrefix(vm.MAC(1), "52:54:00:") {
		t.Errorf("MAC(0), MAC(1) = %q, %q; want distinct 52:54:00 MACs", vm.MAC(0), vm.MAC(1))
	}
	if got := vm.MAC(2); got != "" {
		t.Errorf("MAC(2) = %q, want empty (no such NIC)", got)
	}
}

func TestFrames(t *testing.T) {
	a := net.HardwareAddr{0x52, 0x54, 0, 1, 2, 3}
	b := net.HardwareAddr{0x52, 0x54, 0, 4, 5, 6}
	ipA, ipB := netip.MustParseAddr("10.100.0.1"), netip.MustParseAddr("10.100.0.2")

	arp := ARP{Op: ARPRequest, SenderMAC: a, SenderIP: ipA, TargetMAC: make(net.HardwareAddr, 6), TargetIP: ipB}
	fr := Ether{Dst: net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, Src: a, Tagged: true, VLAN: 100, Type: EtherTypeARP, Payload: arp.Bytes()}.Bytes()
	if len(fr) != 60 {
		t.Errorf("a tagged ARP frame is %d bytes, want 60 (padded)", len(fr))
	}
	e, err := ParseEther(fr)
	if err != nil || !e.Tagged || e.VLAN != 100 || e.Type != EtherTypeARP || e.Src.String() != a.String() {
		t.Fatalf("ParseEther(tagged ARP) = %+v, %v", e, err)
	}
	got, err := ParseARP(e.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(arp, got, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); d != "" {
		t.Errorf("ARP round trip (-want +got):\n%s", d)
	}

	echo := ICMPEcho{Src: ipA, Dst: ipB, Type: ICMPEchoRequest, ID: 0x1234, Seq: 7, Data: []byte("flashvisor")}
	ip := echo.Bytes()
	if inetChecksum(ip[:20]) != 0 || inetChecksum(ip[20:]) != 0 {
		t.Errorf("IPv4 or ICMP checksum does not verify")
	}
	untagged := Ether{Dst: b, Src: a, Type: EtherTypeIPv4, Payload: ip}.Bytes()
	e, err = ParseEther(untagged)
	if err != nil || e.Tagged || e.VLAN != 0 || e.Type != EtherTypeIPv4 {
		t.Fatalf("ParseEther(untagged) = %+v, %v", e, err)
	}
	back, err := ParseICMPEcho(e.Payload) // padding after the packet is ignored
	if err != nil || back.Src != ipA || back.Dst != ipB || back.Type != ICMPEchoRequest || back.ID != 0x1234 || back.Seq != 7 || string(back.Data) != "flashvisor" {
		t.Errorf("ParseICMPEcho = %+v, %v", back, err)
	}

	// RFC 1071's example sums to 0xddf2, so the checksum is its complement.
	if got := inetChecksum([]byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}); got != ^uint16(0xddf2) {
		t.Errorf("inetChecksum(RFC 1071 example) = %#x, want %#x", got, ^uint16(0xddf2))
	}

	for _, bad := range [][]byte{nil, make([]byte, 13), append(Ether{Dst: a, Src: b, Type: EtherTypeVLAN}.Bytes()[:14], 0, 1)} {
		if _, err := ParseEther(bad); err == nil {
			t.Errorf("ParseEther(%d bytes) = nil error", len(bad))
		}
	}
	if _, err := ParseARP(make([]byte, 27)); err == nil {
		t.Errorf("ParseARP(27 bytes) = nil error")
	}
	udp := ICMPEcho{Src: ipA, Dst: ipB}.Bytes()
	udp[9] = 17
	if _, err := ParseICMPEcho(udp); err == nil {
		t.Errorf("ParseICMPEcho(UDP) = nil error")
	}
}
