//go:build fvhost

package kerneltest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ns is a fresh network namespace with a netlink handle inside it.
type ns struct {
	t    *testing.T
	name string
	h    netns.NsHandle
	nl   *netlink.Handle
}

func newNS(t *testing.T, name string) *ns {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	h, err := netns.New() // switches this thread into it
	if serr := netns.Set(orig); serr != nil {
		// The thread is in the wrong namespace: never hand it back.
		panic(serr)
	}
	if err != nil {
		t.Fatalf("new netns %s: %v", name, err)
	}
	// Route netlink only: the image has no xfrm_user, and a handle for
	// every family fails with EPROTONOSUPPORT there.
	nl, err := netlink.NewHandleAt(h, unix.NETLINK_ROUTE)
	if err != nil {
		h.Close()
		t.Fatalf("netlink handle in %s: %v", name, err)
	}
	n := &ns{t: t, name: name, h: h, nl: nl}
	t.Cleanup(func() { nl.Close(); h.Close() })
	// Loopback up, like a fresh host.
	n.up("lo")
	return n
}

// do runs f on a thread inside the namespace; sockets f opens stay there.
func (n *ns) do(f func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	if err := netns.Set(n.h); err != nil {
		return err
	}
	ferr := f()
	if err := netns.Set(orig); err != nil {
		panic(err)
	}
	return ferr
}

func (n *ns) link(name string) netlink.Link {
	n.t.Helper()
	l, err := n.nl.LinkByName(name)
	if err != nil {
		n.t.Fatalf("%s: link %s: %v", n.name, name, err)
	}
	return l
}

func (n *ns) add(l netlink.Link) netlink.Link {
	n.t.Helper()
	if err := n.nl.LinkAdd(l); err != nil {
		n.t.Fatalf("%s: add %s %s: %v", n.name, l.Type(), l.Attrs().Name, err)
	}
	return n.link(l.Attrs().Name)
}

func (n *ns) up(name string) {
	n.t.Helper()
	if err := n.nl.LinkSetUp(n.link(name)); err != nil {
		n.t.Fatalf("%s: %s up: %v", n.name, name, err)
	}
}

func (n *ns) down(name string) {
	n.t.Helper()
	if err := n.nl.LinkSetDown(n.link(name)); err != nil {
		n.t.Fatalf("%s: %s down: %v", n.name, name, err)
	}
}

func (n *ns) addr(name, cidr string) {
	n.t.Helper()
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		n.t.Fatal(err)
	}
	if err := n.nl.AddrAdd(n.link(name), a); err != nil {
		n.t.Fatalf("%s: address %s on %s: %v", n.name, cidr, name, err)
	}
}

func (n *ns) master(name, master string) {
	n.t.Helper()
	if err := n.nl.LinkSetMaster(n.link(name), n.link(master)); err != nil {
		n.t.Fatalf("%s: %s master %s: %v", n.name, name, master, err)
	}
}

// veth creates name in n and peer in p.
func veth(t *testing.T, n *ns, name string, p *ns, peer string) {
	t.Helper()
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: peer, PeerNamespace: netlink.NsFd(int(p.h))}
	if err := n.nl.LinkAdd(v); err != nil {
		t.Fatalf("veth %s/%s - %s/%s: %v", n.name, name, p.name, peer, err)
	}
}

// echoServer answers UDP datagrams on addr inside n until the test ends.
func echoServer(t *testing.T, n *ns, addr string) {
	t.Helper()
	var pc net.PacketConn
	if err := n.do(func() (err error) { pc, err = net.ListenPacket("udp4", addr); return err }); err != nil {
		t.Fatalf("%s: listen %s: %v", n.name, addr, err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			k, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:k], from)
		}
	}()
}

// reach reports whether a UDP echo from n to addr comes back within d.
func reach(t *testing.T, n *ns, addr string, d time.Duration) bool {
	t.Helper()
	var c net.Conn
	if err := n.do(func() (err error) { c, err = net.Dial("udp4", addr); return err }); err != nil {
		// No route counts as unreachable.
		t.Logf("%s: dial %s: %v", n.name, addr, err)
		return false
	}
	defer c.Close()
	deadline := time.Now().Add(d)
	buf := make([]byte, 64)
	for time.Now().Before(deadline) {
		msg := fmt.Sprintf("ping %d", time.Now().UnixNano())
		if _, err := c.Write([]byte(msg)); err != nil && !errors.Is(err, unix.ECONNREFUSED) {
			t.Logf("%s: send to %s: %v", n.name, addr, err)
		}
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		k, err := c.Read(buf)
		// Any echo proves the path: under load an answer can come after
		// the next probe went out.
		if err == nil && strings.HasPrefix(string(buf[:k]), "ping ") {
			return true
		}
	}
	return false
}

// Three namespaces hang off a VLAN-filtering bridge: A and B as access ports
// of VLAN 100, C of VLAN 200, all in one IP subnet. A reaches B, never C.
func TestBridgeVLANFiltering(t *testing.T) {
	sw, a, b, c := newNS(t, "switch"), newNS(t, "a"), newNS(t, "b"), newNS(t, "c")
	on := true
	sw.add(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}, VlanFiltering: &on})
	if br, ok := sw.link("br0").(*netlink.Bridge); !ok || br.VlanFiltering == nil || !*br.VlanFiltering {
		t.Fatalf("br0 = %+v, want a bridge with vlan_filtering on", sw.link("br0"))
	}
	sw.up("br0")
	ports := []struct {
		host *ns
		port string
		vid  uint16
		ip   string
	}{{a, "pa", 100, "10.1.0.1/24"}, {b, "pb", 100, "10.1.0.2/24"}, {c, "pc", 200, "10.1.0.3/24"}}
	for _, p := range ports {
		veth(t, sw, p.port, p.host, "eth0")
		sw.master(p.port, "br0")
		// Access port: drop the default VLAN 1, VLAN vid untagged as PVID.
		if err := sw.nl.BridgeVlanDel(sw.link(p.port), 1, true, true, false, true); err != nil {
			t.Fatalf("vlan 1 off %s: %v", p.port, err)
		}
		if err := sw.nl.BridgeVlanAdd(sw.link(p.port), p.vid, true, true, false, true); err != nil {
			t.Fatalf("vlan %d on %s: %v", p.vid, p.port, err)
		}
		sw.up(p.port)
		p.host.addr("eth0", p.ip)
		p.host.up("eth0")
	}
	vlans, err := sw.nl.BridgeVlanList()
	if err != nil {
		t.Fatal(err)
	}
	got := vlans[int32(sw.link("pc").Attrs().Index)]
	if len(got) != 1 || got[0].Vid != 200 || !got[0].PortVID() || !got[0].EngressUntag() {
		t.Errorf("VLANs of pc = %v, want only 200 as untagged PVID", got)
	}
	echoServer(t, b, "10.1.0.2:7")
	echoServer(t, c, "10.1.0.3:7")
	if !reach(t, a, "10.1.0.2:7", 10*time.Second) {
		t.Error("a (VLAN 100) cannot reach b (VLAN 100)")
	}
	if reach(t, a, "10.1.0.3:7", 2*time.Second) {
		t.Error("a (VLAN 100) reaches c (VLAN 200)")
	}
}

// Two namespaces joined by one veth talk over 802.1Q links: VLAN 100 on both
// sides works; VLAN 200 on one side and 300 on the other share a subnet but
// never meet.
func Test8021Q(t *testing.T) {
	a, b := newNS(t, "a"), newNS(t, "b")
	veth(t, a, "eth0", b, "eth0")
	for _, side := range []struct {
		n          *ns
		vid, other int
		ip, oip    string
	}{{a, 100, 200, "10.2.0.1/24", "10.3.0.1/24"}, {b, 100, 300, "10.2.0.2/24", "10.3.0.2/24"}} {
		side.n.up("eth0") // a VLAN link comes up only over a running parent
		parent := side.n.link("eth0").Attrs().Index
		for _, v := range []struct {
			vid int
			ip  string
		}{{side.vid, side.ip}, {side.other, side.oip}} {
			name := fmt.Sprintf("eth0.%d", v.vid)
			l := side.n.add(&netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: name, ParentIndex: parent}, VlanId: v.vid})
			if vl, ok := l.(*netlink.Vlan); !ok || vl.VlanId != v.vid {
				t.Fatalf("%s = %+v, want an 802.1Q link with VLAN %d", name, l, v.vid)
			}
			side.n.addr(name, v.ip)
			side.n.up(name)
		}
	}
	echoServer(t, b, "10.2.0.2:7")
	echoServer(t, b, "10.3.0.2:7")
	if !reach(t, a, "10.2.0.2:7", 10*time.Second) {
		t.Error("VLAN 100 to VLAN 100: no echo")
	}
	if reach(t, a, "10.3.0.2:7", 2*time.Second) {
		t.Error("VLAN 200 reaches VLAN 300")
	}
}

// A host namespace has an active-backup bond over two veths into a switch
// namespace (a bridge with the peer's address). Traffic flows; when the
// active leg's far end goes down, the bond fails over and traffic flows on.
func TestBondActiveBackupFailover(t *testing.T) {
	host, sw := newNS(t, "host"), newNS(t, "switch")
	bond := netlink.NewLinkBond(netlink.LinkAttrs{Name: "bond0"})
	bond.Mode = netlink.BOND_MODE_ACTIVE_BACKUP
	bond.Miimon = 50
	host.add(bond)
	sw.add(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}})
	for i := 0; i < 2; i++ {
		leg, port := fmt.Sprintf("eth%d", i), fmt.Sprintf("p%d", i)
		veth(t, host, leg, sw, port)
		host.master(leg, "bond0") // a bond takes its slaves while they are down
		sw.master(port, "br0")
		sw.up(port)
	}
	host.addr("bond0", "10.4.0.1/24")
	host.up("bond0")
	sw.addr("br0", "10.4.0.2/24")
	sw.up("br0")
	echoServer(t, sw, "10.4.0.2:7")
	if !reach(t, host, "10.4.0.2:7", 10*time.Second) {
		t.Fatal("no echo through the bond")
	}
	b, ok := host.link("bond0").(*netlink.Bond)
	if !ok || b.Mode != netlink.BOND_MODE_ACTIVE_BACKUP || b.ActiveSlave <= 0 {
		t.Fatalf("bond0 = %+v, want active-backup with an active slave", host.link("bond0"))
	}
	var active string
	for i := 0; i < 2; i++ {
		if host.link(fmt.Sprintf("eth%d", i)).Attrs().Index == b.ActiveSlave {
			active = fmt.Sprintf("%d", i)
		}
	}
	if active == "" {
		t.Fatalf("active slave %d is neither leg", b.ActiveSlave)
	}
	sw.down("p" + active) // the active leg loses carrier
	if !reach(t, host, "10.4.0.2:7", 15*time.Second) {
		t.Fatal("no echo after the active leg went down: no failover")
	}
	if nb := host.link("bond0").(*netlink.Bond); nb.ActiveSlave == b.ActiveSlave {
		t.Errorf("active slave still %d after its leg went down", nb.ActiveSlave)
	}
}

// An 802.3ad (LACP) bond can be created with its slaves; without a partner
// it does not negotiate, so only the configuration is checked.
func TestBondLACP(t *testing.T) {
	n := newNS(t, "host")
	bond := netlink.NewLinkBond(netlink.LinkAttrs{Name: "po1"})
	bond.Mode = netlink.BOND_MODE_802_3AD
	bond.LacpRate = netlink.BOND_LACP_RATE_FAST
	bond.Miimon = 100
	n.add(bond)
	for i := 0; i < 2; i++ {
		name := fmt.Sprintf("d%d", i)
		n.add(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: name}})
		n.master(name, "po1")
		if got := n.link(name).Attrs().MasterIndex; got != n.link("po1").Attrs().Index {
			t.Errorf("%s master index = %d, want po1's", name, got)
		}
	}
	n.up("po1")
	if b, ok := n.link("po1").(*netlink.Bond); !ok || b.Mode != netlink.BOND_MODE_802_3AD {
		t.Errorf("po1 = %+v, want an 802.3ad bond", n.link("po1"))
	}
}

// A police action on an ingress matchall filter caps what reaches the
// receiver: a burst of 1000-byte datagrams far above 1 Mbit/s mostly drops.
func TestTCPoliceIngress(t *testing.T) {
	a, b := newNS(t, "a"), newNS(t, "b")
	veth(t, a, "eth0", b, "eth0")
	a.addr("eth0", "10.5.0.1/24")
	b.addr("eth0", "10.5.0.2/24")
	a.up("eth0")
	b.up("eth0")
	echoServer(t, b, "10.5.0.2:7")
	if !reach(t, a, "10.5.0.2:7", 60*time.Second) { // resolves ARP before policing
		t.Fatal("no echo before policing")
	}

	port := b.link("eth0")
	ingress := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: port.Attrs().Index, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_INGRESS}}
	if err := b.nl.QdiscAdd(ingress); err != nil {
		t.Fatalf("ingress qdisc: %v", err)
	}
	const rate, burst = 125000, 10000 // bytes/s (1 Mbit/s), bytes
	police := netlink.NewPoliceAction()
	police.Rate, police.Burst = rate, burst
	police.ExceedAction, police.NotExceedAction = netlink.TC_POLICE_SHOT, netlink.TC_POLICE_OK
	filter := &netlink.MatchAll{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: port.Attrs().Index, Parent: netlink.MakeHandle(0xffff, 0),
			Priority: 1, Protocol: unix.ETH_P_ALL},
		Actions: []netlink.Action{police},
	}
	if err := b.nl.FilterAdd(filter); err != nil {
		t.Fatalf("matchall police filter: %v", err)
	}
	filters, err := b.nl.FilterList(port, netlink.MakeHandle(0xffff, 0))
	if err != nil || len(filters) != 1 {
		t.Fatalf("ingress filters = %v, %v; want one", filters, err)
	}
	if m, ok := filters[0].(*netlink.MatchAll); !ok || len(m.Actions) != 1 || m.Actions[0].Type() != "police" {
		t.Fatalf("ingress filter = %+v, want matchall with a police action", filters[0])
	}

	var sink net.PacketConn
	if err := b.do(func() (err error) { sink, err = net.ListenPacket("udp4", "10.5.0.2:9"); return err }); err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	var src net.Conn
	if err := a.do(func() (err error) { src, err = net.Dial("udp4", "10.5.0.2:9"); return err }); err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	const n, size = 3000, 1000
	payload := make([]byte, size)
	start := time.Now()
	sent := 0
	for i := 0; i < n; i++ {
		if _, err := src.Write(payload); err == nil {
			sent++
		}
	}
	elapsed := time.Since(start)
	got := 0
	buf := make([]byte, 2048)
	for {
		sink.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		if _, _, err := sink.ReadFrom(buf); err != nil {
			break
		}
		got++
	}
	// On the wire a datagram is size+42 bytes (UDP, IP, Ethernet); allow
	// the burst, the rate over the sending time, and slack for the timer.
	wire := float64(size + 42)
	limit := int((burst+rate*elapsed.Seconds())/wire*1.5) + 10
	t.Logf("sent %d datagrams of %d bytes in %v, received %d (limit %d)", sent, size, elapsed, got, limit)
	if got == 0 {
		t.Error("nothing received: the policer dropped everything")
	}
	if got > limit {
		t.Errorf("received %d datagrams, want at most %d at %d B/s with a %d B burst", got, limit, rate, burst)
	}
}

// Egress shaping qdiscs (tbf, htb) attach to a port.
func TestEgressQdiscs(t *testing.T) {
	n := newNS(t, "host")
	for _, name := range []string{"d0", "d1"} {
		n.add(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: name}})
		n.up(name)
	}
	tbf := &netlink.Tbf{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: n.link("d0").Attrs().Index,
		Handle: netlink.MakeHandle(1, 0), Parent: netlink.HANDLE_ROOT}, Rate: 125000, Limit: 30000, Buffer: 15000}
	if err := n.nl.QdiscAdd(tbf); err != nil {
		t.Errorf("tbf: %v", err)
	}
	htb := netlink.NewHtb(netlink.QdiscAttrs{LinkIndex: n.link("d1").Attrs().Index,
		Handle: netlink.MakeHandle(1, 0), Parent: netlink.HANDLE_ROOT})
	if err := n.nl.QdiscAdd(htb); err != nil {
		t.Errorf("htb: %v", err)
	}
	for name, want := range map[string]string{"d0": "tbf", "d1": "htb"} {
		qs, err := n.nl.QdiscList(n.link(name))
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, q := range qs {
			found = found || q.Type() == want
		}
		if !found {
			t.Errorf("qdiscs of %s = %v, want %s", name, qs, want)
		}
	}
}
