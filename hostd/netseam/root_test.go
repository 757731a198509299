package netseam

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// inNewNetns runs the rest of the test in a fresh network namespace, the
// way vishvananda/netlink's own tests do: the goroutine is locked to its
// thread, the thread moves to the new namespace, and cleanup moves it back.
// It skips when the test cannot do that (not root, no /dev/net/tun).
func inNewNetns(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, bridges and taps")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("needs /dev/net/tun: %v", err)
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("current netns: %v", err)
	}
	ns, err := netns.New()
	if err != nil {
		orig.Close()
		runtime.UnlockOSThread()
		t.Skipf("cannot create a network namespace: %v", err)
	}
	t.Cleanup(func() {
		ns.Close()
		if err := netns.Set(orig); err != nil {
			// Stay locked: the thread dies with the goroutine rather than
			// carrying the test namespace into other tests.
			t.Errorf("restore netns: %v", err)
			return
		}
		orig.Close()
		runtime.UnlockOSThread()
	})
	// Loopback up, as in a real namespace after boot.
	if lo, err := netlink.LinkByName("lo"); err == nil {
		netlink.LinkSetUp(lo)
	}
}

func newRootBridges(t *testing.T, cfg, uplink string) *Bridges {
	t.Helper()
	k, err := NewNetlinkKernel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	b, err := New(Options{ConfigFile: cfg, Uplink: uplink, Kernel: k, Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	return b
}

// linkView is what must not change across a reconcile: a changed index means
// the link was re-created (a flap).
type linkView struct {
	Index  int
	Master int
	MAC    string
	Up     bool
	MTU    int
	Alias  string
}

func kernelLinks(t *testing.T) map[string]linkView {
	t.Helper()
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]linkView{}
	for _, l := range links {
		a := l.Attrs()
		m[a.Name] = linkView{a.Index, a.MasterIndex, a.HardwareAddr.String(), a.Flags&net.FlagUp != 0, a.MTU, a.Alias}
	}
	return m
}

// openTap opens a persistent tap by name exactly as QEMU's tap backend does
// (tap_open in net/tap-linux.c with vnet_hdr): /dev/net/tun, then TUNSETIFF
// with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR.
func openTap(t *testing.T, name string) *os.File {
	t.Helper()
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		t.Fatal(err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		t.Fatalf("TUNSETIFF %s: %v", name, err)
	}
	f := os.NewFile(uintptr(fd), name) // non-blocking: reads honour deadlines
	t.Cleanup(func() { f.Close() })
	return f
}

// vnetHdrLen is sizeof(struct virtio_net_hdr), the default header length of
// an IFF_VNET_HDR tap; all zero means "no offloads".
const vnetHdrLen = 10

func frame(src net.HardwareAddr, payload []byte) []byte {
	b := make([]byte, vnetHdrLen, vnetHdrLen+14+len(payload))
	b = append(b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff) // broadcast
	b = append(b, src...)
	b = append(b, 0x88, 0xb5) // IEEE 802 local experimental EtherType
	return append(b, payload...)
}

// receives reports whether f delivers a frame containing payload before the
// deadline (other traffic, e.g. IPv6 neighbour discovery, is skipped).
func receives(t *testing.T, f *os.File, payload []byte, wait time.Duration) bool {
	t.Helper()
	buf := make([]byte, 65536)
	f.SetReadDeadline(time.Now().Add(wait))
	for {
		n, err := f.Read(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return false
		}
		if err != nil {
			t.Fatalf("read %s: %v", f.Name(), err)
		}
		if bytes.Contains(buf[:n], payload) {
			return true
		}
	}
}

func TestRootBridges(t *testing.T) {
	inNewNetns(t)
	ctx := context.Background()
	cfg := filepath.Join(t.TempDir(), "portgroups.json")
	b := newRootBridges(t, cfg, "")
	for _, pg := range []api.PortGroup{{Name: "VM Network", HostAddress: "10.9.0.1/24"}, {Name: "other"}} {
		if err := b.AddPortGroup(ctx, pg); err != nil {
			t.Fatal(err)
		}
	}
	type vnic struct {
		vm, pg, mac string
	}
	vnics := []vnic{
		{"vm1", "VM Network", "00:50:56:00:00:01"},
		{"vm2", "VM Network", "00:50:56:00:00:02"},
		{"vm3", "other", "00:50:56:00:00:03"},
	}
	taps := map[string]string{}
	for _, v := range vnics {
		tap, err := b.Attach(ctx, v.vm, 0, v.pg, v.mac)
		if err != nil {
			t.Fatal(err)
		}
		taps[v.vm] = tap
	}

	// What the kernel has.
	for _, pg := range []string{"VM Network", "other"} {
		l, err := netlink.LinkByName(BridgeName(pg))
		if err != nil {
			t.Fatalf("bridge of %q: %v", pg, err)
		}
		if _, ok := l.(*netlink.Bridge); !ok || l.Attrs().Alias != pg || l.Attrs().Flags&net.FlagUp == 0 {
			t.Errorf("bridge of %q = %s alias %q flags %v, want an up bridge with alias %q", pg, l.Type(), l.Attrs().Alias, l.Attrs().Flags, pg)
		}
	}
	for _, v := range vnics {
		l, err := netlink.LinkByName(taps[v.vm])
		if err != nil {
			t.Fatalf("tap of %s: %v", v.vm, err)
		}
		tt, ok := l.(*netlink.Tuntap)
		if !ok || tt.Mode != netlink.TUNTAP_MODE_TAP || tt.NonPersist {
			t.Errorf("%s: %s %+v, want a persistent tap", taps[v.vm], l.Type(), l)
		}
		br, _ := netlink.LinkByName(BridgeName(v.pg))
		a := l.Attrs()
		if a.MasterIndex != br.Attrs().Index || a.Flags&net.FlagUp == 0 || a.MTU != br.Attrs().MTU {
			t.Errorf("%s: master %d up %v mtu %d, want master %d (%s), up, mtu %d", a.Name, a.MasterIndex, a.Flags&net.FlagUp != 0, a.MTU, br.Attrs().Index, br.Attrs().Name, br.Attrs().MTU)
		}
		if want, _ := tapMAC(v.mac); a.HardwareAddr.String() != want {
			t.Errorf("%s: MAC %s, want %s", a.Name, a.HardwareAddr, want)
		}
	}
	br, _ := netlink.LinkByName(BridgeName("VM Network"))
	addrs, err := netlink.AddrList(br, netlink.FAMILY_V4)
	if err != nil || len(addrs) != 1 || addrs[0].IPNet.String() != "10.9.0.1/24" {
		t.Errorf("host addresses on %s = %v, %v; want 10.9.0.1/24", br.Attrs().Name, addrs, err)
	}

	// Reconcile again, and as a restarted hostd: nothing changes.
	before := kernelLinks(t)
	if err := b.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	b = newRootBridges(t, cfg, "")
	if _, err := b.Attach(ctx, "vm1", 0, "VM Network", "00:50:56:00:00:01"); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(before, kernelLinks(t)); d != "" {
		t.Errorf("links changed by reconcile and restart (-before +after):\n%s", d)
	}

	// QEMU's view: open the taps by name; a frame from vm1 reaches vm2 on
	// the same port group, and not vm3 on the other.
	f1, f2, f3 := openTap(t, taps["vm1"]), openTap(t, taps["vm2"]), openTap(t, taps["vm3"])
	payload := make([]byte, 16)
	rand.Read(payload)
	payload = []byte("netseam test " + hex.EncodeToString(payload))
	src, _ := net.ParseMAC("00:50:56:00:00:01")
	got := false
	for try := 0; try < 25 && !got; try++ { // ports may need a moment to forward
		if _, err := f1.Write(frame(src, payload)); err != nil {
			t.Fatalf("write to %s: %v", taps["vm1"], err)
		}
		got = receives(t, f2, payload, 200*time.Millisecond)
	}
	if !got {
		t.Errorf("frame written into %s (vm1) never came out of %s (vm2) on the same bridge", taps["vm1"], taps["vm2"])
	}
	if receives(t, f3, payload, 500*time.Millisecond) {
		t.Errorf("frame from vm1 on port group %q came out of %s (vm3) on port group %q", "VM Network", taps["vm3"], "other")
	}
	f1.Close()
	f2.Close()
	f3.Close()

	// Power off vm1, delete vm3, remove the emptied port group.
	if err := b.Detach(ctx, "vm1", 0); err != nil {
		t.Fatal(err)
	}
	if err := b.Release(ctx, "vm3"); err != nil {
		t.Fatal(err)
	}
	if err := b.RemovePortGroup(ctx, "other"); err != nil {
		t.Fatal(err)
	}
	links := kernelLinks(t)
	for _, gone := range []string{taps["vm1"], taps["vm3"], BridgeName("other")} {
		if _, ok := links[gone]; ok {
			t.Errorf("%s still exists", gone)
		}
	}
	if l, ok := links[taps["vm2"]]; !ok || l.Index != before[taps["vm2"]].Index {
		t.Errorf("vm2's tap = %+v, want untouched %+v", l, before[taps["vm2"]])
	}
}

// TestRootUplink uses a veth as the uplink: an untagged port group takes it
// as a bridge port; a VLAN port group needs 8021q, which the kernel may lack
// (then the error must say so).
func TestRootUplink(t *testing.T) {
	inNewNetns(t)
	ctx := context.Background()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "up0"}, PeerName: "switch0"}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Skipf("cannot create a veth to stand for the uplink: %v", err)
	}
	b := newRootBridges(t, filepath.Join(t.TempDir(), "pg.json"), "up0")
	if err := b.AddPortGroup(ctx, api.PortGroup{Name: "VM Network"}); err != nil {
		t.Fatal(err)
	}
	up, _ := netlink.LinkByName("up0")
	br, _ := netlink.LinkByName(BridgeName("VM Network"))
	if up.Attrs().MasterIndex != br.Attrs().Index || up.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("uplink master %d up %v, want %d (%s), up", up.Attrs().MasterIndex, up.Attrs().Flags&net.FlagUp != 0, br.Attrs().Index, br.Attrs().Name)
	}
	err := b.AddPortGroup(ctx, api.PortGroup{Name: "prod", VLAN: 100})
	switch {
	case errors.Is(err, ErrNoVLANSupport):
		t.Logf("this kernel has no 802.1Q: %v", err)
		return
	case err != nil:
		t.Fatal(err)
	}
	v, err := netlink.LinkByName("fvvlan100")
	if err != nil {
		t.Fatal(err)
	}
	vl, ok := v.(*netlink.Vlan)
	prod, _ := netlink.LinkByName(BridgeName("prod"))
	if !ok || vl.VlanId != 100 || vl.ParentIndex != up.Attrs().Index || vl.MasterIndex != prod.Attrs().Index {
		t.Errorf("fvvlan100 = %+v, want VLAN 100 on up0 in bridge %s", v, prod.Attrs().Name)
	}
}
