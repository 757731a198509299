package vmknic_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/internal/netnstest"
	vmknic "github.com/flashvisor/flashvisor/vmkernel-nics"
	"github.com/flashvisor/flashvisor/vmkernel-nics/vmknictest"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// inNewNetns runs the rest of the test in a fresh network namespace
// (netnstest.Enter) with its loopback up, and returns it.
func inNewNetns(t *testing.T) netns.NsHandle {
	t.Helper()
	ns := netnstest.Enter(t)
	if lo, err := netlink.LinkByName("lo"); err == nil {
		netlink.LinkSetUp(lo)
	}
	return ns
}

// countingKernel counts the changes applied through it.
type countingKernel struct {
	vmknic.Kernel
	mu      sync.Mutex
	applied []string
}

func (k *countingKernel) Apply(ctx context.Context, c vmknic.Change) error {
	k.mu.Lock()
	k.applied = append(k.applied, c.String())
	k.mu.Unlock()
	return k.Kernel.Apply(ctx, c)
}

func (k *countingKernel) since(n int) []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.applied[n:]...)
}

func newNetnsManager(t *testing.T, d vmknic.DHCP) (*vmknic.Manager, *countingKernel) {
	t.Helper()
	nk, err := vmknic.NewNetlinkKernel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nk.Close)
	k := &countingKernel{Kernel: nk}
	m, err := vmknic.New(vmknic.Options{Kernel: k, DHCP: d, Host: host, Log: logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m, k
}

func link(t *testing.T, name string) netlink.Link {
	t.Helper()
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
	return l
}

func addrs(t *testing.T, name string) []string {
	t.Helper()
	as, err := netlink.AddrList(link(t, name), netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range as {
		out = append(out, a.IPNet.String())
	}
	return out
}

// defaultRoute returns "gw dev" of the main table's default route.
func defaultRoute(t *testing.T) string {
	t.Helper()
	rs, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if (r.Dst == nil || r.Dst.String() == "0.0.0.0/0") && r.Gw != nil {
			l, _ := netlink.LinkByIndex(r.LinkIndex)
			return r.Gw.String() + " " + l.Attrs().Name
		}
	}
	return ""
}

func netnsSpecs() []api.VMKNIC {
	mgmt := static("vswif0", "192.168.1.10/24", "192.168.1.1")
	mgmt.PortGroup, mgmt.Services = "Management Network", []string{"management"}
	jumbo := static("vmk1", "10.1.0.5/24", "")
	jumbo.MTU, jumbo.MAC = 9000, "00:50:56:01:02:03"
	return []api.VMKNIC{mgmt, jumbo, {Name: "vmk2", PortGroup: "vMotion", IPv4: api.VMKIPv4{Mode: "none"}}}
}

func TestNetnsVmknics(t *testing.T) {
	inNewNetns(t)
	m, k := newNetnsManager(t, vmknictest.NewDHCP())
	ctx := context.Background()
	if err := m.Apply(ctx, netnsSpecs()); err != nil {
		t.Fatal(err)
	}

	v := link(t, "vswif0")
	if _, ok := v.(*netlink.Veth); !ok {
		t.Fatalf("vswif0 is a %s, want a veth", v.Type())
	}
	a := v.Attrs()
	if a.HardwareAddr.String() != vmknic.GenerateMAC("vswif0", host, 0) || a.MTU != 1500 || a.Flags&net.FlagUp == 0 || a.Alias != "fvvmk Management Network" {
		t.Errorf("vswif0: mac %s mtu %d flags %v alias %q", a.HardwareAddr, a.MTU, a.Flags, a.Alias)
	}
	if p := link(t, "fvk-vswif0"); p.Attrs().Index != a.ParentIndex || p.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("fvk-vswif0 is not vswif0's peer, or down")
	}
	if got := addrs(t, "vswif0"); len(got) != 1 || got[0] != "192.168.1.10/24" {
		t.Errorf("vswif0 addresses = %v, want 192.168.1.10/24", got)
	}
	if got := defaultRoute(t); got != "192.168.1.1 vswif0" {
		t.Errorf("default route = %q, want via 192.168.1.1 dev vswif0", got)
	}
	j, jp := link(t, "vmk1").Attrs(), link(t, "fvk-vmk1").Attrs()
	if j.MTU != 9000 || jp.MTU != 9000 || j.HardwareAddr.String() != "00:50:56:01:02:03" {
		t.Errorf("vmk1: mtu %d/%d mac %s, want 9000 on both ends and 00:50:56:01:02:03", j.MTU, jp.MTU, j.HardwareAddr)
	}
	if got := addrs(t, "vmk2"); len(got) != 0 {
		t.Errorf("vmk2 (none) has %v", got)
	}
	st, err := m.Status(ctx)
	if err != nil || len(st) != 3 || !st[0].Up || st[0].Address != "192.168.1.10/24" || st[0].Gateway != "192.168.1.1" || st[1].Switchport != "fvk-vmk1" {
		t.Errorf("Status = %+v, %v", st, err)
	}

	// Re-applying, or a restarted manager, changes nothing.
	index := a.Index
	n := len(k.applied)
	if err := m.Apply(ctx, netnsSpecs()); err != nil {
		t.Fatal(err)
	}
	m.Close()
	m2, k2 := newNetnsManager(t, vmknictest.NewDHCP())
	if err := m2.Apply(ctx, netnsSpecs()); err != nil {
		t.Fatal(err)
	}
	if got := append(k.since(n), k2.since(0)...); len(got) != 0 {
		t.Errorf("re-applying changed %v", got)
	}
	if link(t, "vswif0").Attrs().Index != index {
		t.Error("vswif0 was re-created")
	}

	// One vmknic changes: only it is touched. The gateway moves.
	specs := netnsSpecs()
	specs[1].MTU = 1500
	specs[0].IPv4.Gateway, specs[1].IPv4.Gateway = "", "10.1.0.1"
	if err := m2.Apply(ctx, specs); err != nil {
		t.Fatal(err)
	}
	for _, c := range k2.since(0) {
		t.Logf("applied: %s", c)
	}
	if got := defaultRoute(t); got != "10.1.0.1 vmk1" {
		t.Errorf("default route = %q, want via 10.1.0.1 dev vmk1", got)
	}
	if j, jp := link(t, "vmk1").Attrs(), link(t, "fvk-vmk1").Attrs(); j.MTU != 1500 || jp.MTU != 1500 {
		t.Errorf("vmk1 mtu %d/%d, want 1500", j.MTU, jp.MTU)
	}

	// A foreign vmk5 is refused and left alone; an unmarked pair with
	// our names (a crash right after creating it) is adopted; removed
	// vmknics go with both ends.
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "vmk5"}, PeerName: "other5"}); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "vmk6"}, PeerName: "fvk-vmk6"}); err != nil {
		t.Fatal(err)
	}
	specs = append(specs[:2], static("vmk5", "10.5.0.5/24", ""), static("vmk6", "10.6.0.5/24", ""))
	before := len(k2.since(0))
	err = m2.Apply(ctx, specs)
	if !errors.Is(err, vmknic.ErrNotOurs) {
		t.Errorf("Apply with a foreign vmk5 = %v, want ErrNotOurs", err)
	}
	for _, c := range k2.since(before) {
		if c == "create vmk6" || c[:len("delete")] == "delete" && c != "delete vmk2" {
			t.Errorf("unexpected change %q", c)
		}
	}
	if _, err := netlink.LinkByName("vmk2"); err == nil {
		t.Error("vmk2 still exists")
	}
	if _, err := netlink.LinkByName("fvk-vmk2"); err == nil {
		t.Error("fvk-vmk2 still exists")
	}
	if l := link(t, "vmk5"); l.Attrs().Alias != "" || l.Attrs().Flags&net.FlagUp != 0 || len(addrs(t, "vmk5")) != 0 {
		t.Error("the foreign vmk5 was touched")
	}
	if got := link(t, "vmk6").Attrs().Alias; got != "fvvmk PG vmk6" || len(addrs(t, "vmk6")) != 1 {
		t.Errorf("adopted vmk6: alias %q, addresses %v", got, addrs(t, "vmk6"))
	}
}

// TestNetnsUplinkMACIsBridgeLocal records why vswif0 does not take the
// uplink's MAC (GenerateMAC): a Linux bridge keeps every port's own
// address as a local entry and delivers frames for it to itself.
func TestNetnsUplinkMACIsBridgeLocal(t *testing.T) {
	inNewNetns(t)
	uplinkMAC, _ := net.ParseMAC("00:25:90:aa:bb:cc")
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
	if err := netlink.LinkAdd(br); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "up0", HardwareAddr: uplinkMAC}, PeerName: "wire0"}); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetMaster(link(t, "up0"), link(t, "br0")); err != nil {
		t.Fatal(err)
	}
	neighs, err := netlink.NeighList(link(t, "up0").Attrs().Index, unix.AF_BRIDGE)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range neighs {
		if n.HardwareAddr.String() == uplinkMAC.String() && n.State&netlink.NUD_PERMANENT != 0 {
			return // local: frames for it never reach another port
		}
	}
	t.Errorf("no local bridge entry for the uplink's own MAC: %v", neighs)
}

func TestNetnsDHCP(t *testing.T) {
	hostNS := inNewNetns(t)
	srv := startDHCPServer(t, hostNS)

	m, _ := newNetnsManager(t, vmknic.NClient4{NetnsPath: fmt.Sprintf("/proc/self/fd/%d", int(hostNS)), Timeout: time.Second})
	ctx := context.Background()
	specs := []api.VMKNIC{dhcp("vswif0", "management")}
	if err := m.Apply(ctx, specs); err != nil {
		t.Fatal(err)
	}
	// The VEM's part, done by hand: the switch end on the "switch".
	if err := netlink.LinkSetMaster(link(t, "fvk-vswif0"), link(t, "br0")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "the lease on vswif0", func() bool {
		as := addrs(t, "vswif0")
		return len(as) == 1 && as[0] == "10.77.0.50/24" && defaultRoute(t) == "10.77.0.1 vswif0"
	})
	st, err := m.Status(ctx)
	if err != nil || len(st) != 1 || st[0].LeaseExpires.IsZero() || st[0].Gateway != "10.77.0.1" || len(st[0].DNS) != 1 {
		t.Errorf("Status = %+v, %v", st, err)
	}
	as, _ := netlink.AddrList(link(t, "vswif0"), netlink.FAMILY_V4)
	if len(as) != 1 || as[0].ValidLft <= 0 || as[0].ValidLft > int(srv.lease/time.Second) {
		t.Errorf("vswif0 address %+v, want a lifetime of at most the lease (%s)", as, srv.lease)
	}
	// Renewal at half the lease.
	waitFor(t, 2*srv.lease, "a renewal", func() bool { return srv.count("renew") >= 1 })
	// Removal releases the lease and deletes the pair.
	if err := m.Apply(ctx, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the release", func() bool { return srv.count("release") == 1 })
	if _, err := netlink.LinkByName("vswif0"); err == nil {
		t.Error("vswif0 still exists")
	}
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
