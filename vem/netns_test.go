package vem_test

import (
	"context"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/vem"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// inNewNetns runs the rest of the test in a fresh network namespace (the
// goroutine stays locked to its thread), skipping when that is impossible.
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
			t.Errorf("restore netns: %v", err) // stay locked: the thread dies
			return
		}
		orig.Close()
		runtime.UnlockOSThread()
	})
	if lo, err := netlink.LinkByName("lo"); err == nil {
		netlink.LinkSetUp(lo)
	}
}

func newNetlinkKernel(t *testing.T) *vem.NetlinkKernel {
	t.Helper()
	k, err := vem.NewNetlinkKernel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	return k
}

// noVLANs strips what this kernel cannot do (VLAN filtering, tc actions)
// from a desired state, so the netns tests exercise the rest: bridge, taps,
// veths, port flags, static sticky entries. The fvhost tests run the full
// state inside the emulated host.
func noVLANs(st vem.KernelState) vem.KernelState {
	for i := range st.Links {
		l := &st.Links[i]
		if l.Bridge != nil {
			l.Bridge = &vem.BridgeOpts{}
		}
		if l.BridgePort != nil {
			bp := *l.BridgePort
			bp.VLANs, bp.Untagged, bp.PVID = vem.VLANSet{}, vem.VLANSet{}, 0
			l.BridgePort = &bp
		}
		l.TC = vem.TC{}
	}
	seen := map[vem.FDBEntry]bool{}
	var fdb []vem.FDBEntry
	for _, e := range st.FDB {
		e.VLAN = 0
		if !seen[e] {
			seen[e] = true
			fdb = append(fdb, e)
		}
	}
	st.FDB = fdb
	return st
}

func netnsConfig() api.SwitchConfig {
	return api.SwitchConfig{
		Module: 3,
		Profiles: []api.PortProfile{
			{Name: "web", Type: api.ProfileVethernet, Mode: api.ModeAccess, AccessVLAN: 100, Enabled: true},
			{Name: "uplink", Type: api.ProfileEthernet, Mode: api.ModeTrunk, CapabilityUplink: true, Enabled: true},
		},
		Ports: []api.Port{
			{Name: "Veth1", Kind: api.PortVeth, Profile: "web", MACs: []string{"52:54:00:00:00:01"}},
			{Name: "Veth2", Kind: api.PortVeth, Profile: "web", MACs: []string{"52:54:00:00:00:02", "52:54:00:00:00:03"}},
			{Name: "Veth3", Kind: api.PortVeth, Profile: "web", Interface: "vmk1", MACs: []string{"52:54:00:00:00:04"}},
			{Name: "Eth3/1", Kind: api.PortEth, Profile: "uplink", Interface: "up1"},
			{Name: "Eth3/2", Kind: api.PortEth, Profile: "uplink", Interface: "up2"},
		},
	}
}

func reconcileNetns(t *testing.T, k vem.Kernel, d vem.KernelState) {
	t.Helper()
	ctx := context.Background()
	obs, err := k.Observe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range vem.Plan(d, obs) {
		if err := k.Apply(ctx, c); err != nil {
			t.Fatalf("Apply: %v", err)
		}
	}
	obs, err = k.Observe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if again := vem.Plan(d, obs); len(again) != 0 {
		t.Fatalf("Plan after applying = %v, want empty", again)
	}
}

func TestNetnsBridgeTapsVethsFDB(t *testing.T) {
	inNewNetns(t)
	for _, pair := range [][2]string{{"vmk1", "vmk1-host"}, {"up1", "up1-peer"}, {"up2", "up2-peer"}} {
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: pair[0]}, PeerName: pair[1]}); err != nil {
			t.Fatal(err)
		}
	}
	k := newNetlinkKernel(t)
	c := mustValidate(t, netnsConfig())
	d := noVLANs(vem.Desired(c, vem.Runtime{}))
	reconcileNetns(t, k, d)

	obs, err := k.Observe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name                      string
		learning, flood, isolated bool
	}{
		{"fvveth1", false, false, false},
		{"vmk1", false, false, false},
		{"up1", true, true, true},
	} {
		l := find(t, obs, tc.name)
		if l.Master != vem.BridgeName || l.BridgePort == nil || l.BridgePort.Learning != tc.learning || l.BridgePort.Flood != tc.flood || l.BridgePort.Isolated != tc.isolated {
			t.Errorf("%s: master %q port %+v, want learning %t flood %t isolated %t", tc.name, l.Master, l.BridgePort, tc.learning, tc.flood, tc.isolated)
		}
	}
	if l := find(t, obs, "fvveth2"); l.Kind != vem.KindTap || l.Port != "Veth2" {
		t.Errorf("fvveth2 = kind %s port %q, want a tap recording Veth2", l.Kind, l.Port)
	}
	if len(obs.FDB) != 4 {
		t.Errorf("static entries = %v, want 4", obs.FDB)
	}
	// Ports and the switch are no host interfaces: no IPv6 of their own.
	for _, name := range []string{vem.BridgeName, "fvveth1", "vmk1", "up1"} {
		b, err := os.ReadFile("/proc/sys/net/ipv6/conf/" + name + "/disable_ipv6")
		if err != nil {
			t.Logf("no IPv6 in this kernel? %v", err)
			break
		}
		if strings.TrimSpace(string(b)) != "1" {
			t.Errorf("%s: disable_ipv6 = %q, want 1", name, b)
		}
	}

	// A restarted agent (a new kernel handle) plans nothing.
	reconcileNetns(t, newNetlinkKernel(t), d)

	// One port changes: only it is touched; removing everything cleans up.
	sc := netnsConfig()
	sc.Ports[1].MACs = sc.Ports[1].MACs[:1]
	sc.Ports[3].Shutdown = true
	d2 := noVLANs(vem.Desired(mustValidate(t, sc), vem.Runtime{}))
	obs, _ = k.Observe(context.Background())
	for _, ch := range vem.Plan(d2, obs) {
		if ch.Link.Name != "fvveth2" && ch.Link.Name != "up1" {
			t.Errorf("Plan touches %s: %s", ch.Link.Name, ch)
		}
	}
	reconcileNetns(t, k, d2)
	reconcileNetns(t, k, noVLANs(vem.Desired(mustValidate(t, api.SwitchConfig{Module: 3}), vem.Runtime{})))
	obs, _ = k.Observe(context.Background())
	for _, l := range obs.Links {
		if l.Kind == vem.KindTap || l.Master != "" && l.Master != vem.BridgeName {
			t.Errorf("left behind: %s (%s, master %q)", l.Name, l.Kind, l.Master)
		}
	}
}
