package vsmlink_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/internal/linklocal"
	"github.com/flashvisor/flashvisor/internal/netnstest"
	"github.com/flashvisor/flashvisor/internal/pktchan"
	"github.com/flashvisor/flashvisor/vem/vsmlink"
	"github.com/flashvisor/flashvisor/vem/vsmlink/vsmlinktest"
)

// l2Local is the host's own switch with a vmknic (vmk1, no IPv4) on the
// control VLAN 260, next to the usual management vmknic.
func l2Local() api.SwitchConfig {
	sc := localConfig()
	sc.Profiles = append(sc.Profiles, api.PortProfile{Name: "pg-VSM-Control", Type: api.ProfileVethernet, Mode: api.ModeAccess,
		AccessVLAN: 260, SystemVLANs: "260", Enabled: true})
	sc.Ports = append(sc.Ports, api.Port{Name: "Veth2", Kind: api.PortVeth, Profile: "pg-VSM-Control", Interface: "fvk-vmk1",
		MACs: []string{"00:50:56:aa:00:02"}, Owner: "vmk1"})
	return sc
}

// TestL2ModeOverLinkLocal: in svs mode L2 the VEM reaches the VSM with no
// IP configuration on either side: at the VSM's IPv6 link-local address,
// through the host's vmknic on the control VLAN. The VSM and the host are
// two network namespaces joined by a veth pair (the control VLAN's L2
// segment). The host joins in L3 mode (it dials the routable address and
// not the link-local one); the VSM's next snapshot says L2, and the VEM
// reconnects over the link-local address, never dialling the routable
// one again.
func TestL2ModeOverLinkLocal(t *testing.T) {
	n := newL2Net(t)
	hostNS, ll := n.hostNS, n.ll

	ca := vsmlinktest.NewCA(t)
	vsm := vsmlinktest.StartOn(t, ca, domain, "[::]:0")
	_, port, _ := net.SplitHostPort(vsm.Addr)
	var dialed []string
	var dmu sync.Mutex
	f := newFixture(t, func(o *vsmlink.Options) {
		dial := dialIn(hostNS)
		o.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			dmu.Lock()
			dialed = append(dialed, addr)
			dmu.Unlock()
			return dial(ctx, network, addr)
		}
	})
	f.vsm = vsm
	if err := f.agent.SetConfig(context.Background(), l2Local()); err != nil {
		t.Fatal(err)
	}
	f.start()
	l3 := "192.0.2.1:" + port
	j := vsm.Join(t, api.VSMUplink{Interface: "eth1", Profile: "dvs-uplink"})
	j.Opaque.VSMs = []string{net.JoinHostPort(ll.String(), port), l3}
	if err := f.link.Join(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	c, hello := f.connect(3, 1)
	if hello.HostUUID != hostUUID {
		t.Errorf("hello = %+v", hello)
	}
	if ack := f.config(c, snapshot(3, 1)); ack.Error != "" {
		t.Fatalf("ack = %+v", ack)
	}
	if st := f.link.Status(); !st.Connected || st.VSM != l3 || st.ControlMode != api.SVSModeL3 {
		t.Errorf("status in L3 mode = %+v, want connected to %s in L3 mode", st, l3)
	}

	// svs mode L2 on the VSM: its snapshot carries the opaque data.
	snap := snapshot(3, 2)
	snap.Opaque = &api.VSMOpaque{DomainID: domain, SwitchName: "dvs", VSMs: j.Opaque.VSMs, Mode: api.SVSModeL2, ControlVLAN: 260, PacketVLAN: 261}
	if ack := f.config(c, snap); ack.Error != "" {
		t.Fatalf("ack = %+v", ack)
	}
	c2, _ := f.connect(3, 1)
	f.config(c2, snapshot(3, 2))
	want := net.JoinHostPort(ll.String()+"%vmk1", port)
	if st := f.link.Status(); !st.Connected || st.VSM != want || st.ControlMode != api.SVSModeL2 || st.ControlVLAN != 260 {
		t.Errorf("status in L2 mode = %+v, want connected to %s in L2 mode, control VLAN 260", st, want)
	}
	dmu.Lock()
	defer dmu.Unlock()
	if len(dialed) != 2 || dialed[0] != l3 || dialed[1] != want {
		t.Errorf("dialled %v, want %s then %s", dialed, l3, want)
	}
}

// TestL2ModeNeedsControlVmknic: without a vmknic on the control VLAN an L2
// link says why it cannot connect, and dials nothing.
func TestL2ModeNeedsControlVmknic(t *testing.T) {
	dialed := make(chan string, 8)
	f := newFixture(t, func(o *vsmlink.Options) {
		o.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			dialed <- addr
			return nil, errors.New("no dial expected")
		}
	})
	if err := f.agent.SetConfig(context.Background(), localConfig()); err != nil {
		t.Fatal(err)
	}
	f.start()
	j := f.vsm.Join(t)
	j.Opaque.VSMs = append(j.Opaque.VSMs, "[fe80::250:56ff:fe00:1]:2001")
	j.Opaque.Mode, j.Opaque.ControlVLAN = api.SVSModeL2, 260
	if err := f.link.Join(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the L2 error in the status", func() bool {
		return strings.Contains(f.link.Status().LastError, "no vmknic on the control VLAN 260")
	})
	select {
	case a := <-dialed:
		t.Errorf("dialled %s without a control vmknic", a)
	default:
	}
}

// linkLocal waits for name's IPv6 link-local address to finish duplicate
// address detection and returns it.
func linkLocal(t *testing.T, h *netlink.Handle, name string) netip.Addr {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ip, err := linklocal.Wait(ctx, h, l)
	if err != nil {
		t.Fatal(err)
	}
	return ip
}

// dialIn dials from network namespace ns.
func dialIn(ns netns.NsHandle) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return netnstest.In(ns, func() (net.Conn, error) { return (&net.Dialer{}).DialContext(ctx, network, addr) })
	}
}

// l2Net is the control VLAN's segment of the L2 tests: the VSM's side is
// the test's namespace (ctl0), the host's another (vmk1), joined by a veth
// pair, both with IPv6 link-local addresses ready (and IPv4 for an L3
// start: 192.0.2.1 and .2).
type l2Net struct {
	vsmNS, hostNS netns.NsHandle
	ll            netip.Addr // ctl0's link-local address
}

func newL2Net(t *testing.T) l2Net {
	t.Helper()
	vsmNS := netnstest.Enter(t)
	hostNS, err := netns.New() // the thread moves there
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hostNS.Close() })
	if err := netns.Set(vsmNS); err != nil {
		t.Fatal(err)
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "ctl0"}, PeerName: "vmk1"}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	peer, err := netlink.LinkByName("vmk1")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetNsFd(peer, int(hostNS)); err != nil {
		t.Fatal(err)
	}
	hostH, err := netlink.NewHandleAt(hostNS, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer hostH.Close()
	vsmH, err := netlink.NewHandleAt(vsmNS, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer vsmH.Close()
	for _, up := range []struct {
		h    *netlink.Handle
		name string
	}{{vsmH, "ctl0"}, {vsmH, "lo"}, {hostH, "vmk1"}, {hostH, "lo"}} {
		l, err := up.h.LinkByName(up.name)
		if err == nil {
			err = up.h.LinkSetUp(l)
		}
		if err != nil {
			t.Fatalf("%s up: %v", up.name, err)
		}
	}
	ll := linkLocal(t, vsmH, "ctl0")
	linkLocal(t, hostH, "vmk1") // usable as a source once DAD is over
	// IPv4 for the L3 start only.
	for _, a := range []struct {
		h    *netlink.Handle
		name string
		cidr string
	}{{vsmH, "ctl0", "192.0.2.1/24"}, {hostH, "vmk1", "192.0.2.2/24"}} {
		l, _ := a.h.LinkByName(a.name)
		addr, _ := netlink.ParseAddr(a.cidr)
		if err := a.h.AddrAdd(l, addr); err != nil {
			t.Fatal(err)
		}
	}

	return l2Net{vsmNS: vsmNS, hostNS: hostNS, ll: ll}
}

// openIn opens packet channel sockets in network namespace ns.
func openIn(ns netns.NsHandle) vsmlink.PacketOpener {
	return func(ifname string) (vsmlink.PacketSender, error) {
		return netnstest.In(ns, func() (vsmlink.PacketSender, error) { return pktchan.Listen(ifname) })
	}
}

// TestL2PacketChannel: in svs mode L2 the VEM relays the frames its
// uplinks capture as raw frames on the packet VLAN (here the control
// VLAN's segment, vmk1) to the VSM's packet vNIC (ctl0), tagged with the
// key of its control connection's TLS session; a frame too big for the
// vmknic's MTU takes the control connection.
func TestL2PacketChannel(t *testing.T) {
	n := newL2Net(t)
	rx, err := pktchan.Listen("ctl0") // the test's thread is in the VSM's namespace
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	got := make(chan pktchan.Frame, 8)
	var key []byte
	var kmu sync.Mutex
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go rx.Run(ctx, func(p []byte) {
		kmu.Lock()
		k := key
		kmu.Unlock()
		f, err := pktchan.Open(p, k)
		if err != nil {
			t.Errorf("packet channel frame does not open with the connection's key: %v", err)
			return
		}
		f.Data = bytes.Clone(f.Data)
		got <- f
	})

	frames := &vsmlinktest.Frames{}
	vsm := vsmlinktest.StartOn(t, vsmlinktest.NewCA(t), domain, "[::]:0")
	_, port, _ := net.SplitHostPort(vsm.Addr)
	f := newFixture(t, func(o *vsmlink.Options) {
		o.Dial, o.Packet = dialIn(n.hostNS), openIn(n.hostNS)
		o.Frames, o.FrameInterval = frames, time.Millisecond
	})
	f.vsm, f.packetMAC = vsm, rx.MAC().String()
	if err := f.agent.SetConfig(context.Background(), l2Local()); err != nil {
		t.Fatal(err)
	}
	f.start()
	j := vsm.Join(t, api.VSMUplink{Interface: "eth1", Profile: "dvs-uplink"})
	j.Opaque.VSMs = []string{net.JoinHostPort(n.ll.String(), port)}
	j.Opaque.Mode, j.Opaque.ControlVLAN, j.Opaque.PacketVLAN = api.SVSModeL2, 260, 260
	if err := f.link.Join(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	c, _ := f.connect(3, 1)
	k, err := c.PacketKey()
	if err != nil {
		t.Fatal(err)
	}
	kmu.Lock()
	key = k
	kmu.Unlock()
	if ack := f.config(c, snapshot(3, 1)); ack.Error != "" {
		t.Fatalf("ack = %+v", ack)
	}
	eventually(t, "the capture on eth1 and the packet path", func() bool {
		return slices.Contains(frames.Running(), "eth1") && f.link.Status().PacketChannel == "VLAN 260 via vmk1"
	})

	small := cdpFrame("core-sw1")
	frames.Inject("eth1", small)
	select {
	case fr := <-got:
		if fr.Port != "Eth3/2" || fr.Module != 3 || fr.Domain != domain || fr.Seq != 1 || !bytes.Equal(fr.Data, small) {
			t.Errorf("packet channel frame %+v, want Eth3/2 of module 3, seq 1, the CDP frame", fr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("nothing on the packet VLAN in 10 s")
	}
	// A frame that does not fit the MTU once wrapped: the control
	// connection. (Had the first one come this way too, Expect would
	// see it first.)
	time.Sleep(5 * time.Millisecond) // FrameInterval
	big := append(cdpFrame("core-sw2"), make([]byte, 1490)...)
	frames.Inject("eth1", big)
	if m := c.Expect(t, api.VSMFrame, wait); !bytes.Equal(m.Frame.Data, big) || m.Frame.Port != "Eth3/2" {
		t.Errorf("control connection frame: port %s, %d bytes; want Eth3/2, the %d-byte frame", m.Frame.Port, len(m.Frame.Data), len(big))
	}
	if st := f.link.Status(); st.PacketFrames != 1 {
		t.Errorf("status packet_frames %d, want 1", st.PacketFrames)
	}

}
