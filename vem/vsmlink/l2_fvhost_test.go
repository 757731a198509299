//go:build fvhost

package vsmlink_test

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/internal/netnstest"
	"github.com/flashvisor/flashvisor/vem"
	"github.com/flashvisor/flashvisor/vem/vsmlink"
	"github.com/flashvisor/flashvisor/vem/vsmlink/vsmlinktest"
)

// TestFVHostL2ModeOverControlVLAN is svs mode L2 on the real switch (run
// inside the emulated host: it needs bridge VLAN filtering): the VEM's
// bridge carries the control VLAN 260 between the host's vmknic vmk1 and
// the VSM VM's control vNIC (a veth whose far end, ctl0, is in the VSM's
// network namespace); the link dials the VSM's IPv6 link-local address
// through vmk1, not through vmk2, a vmknic on VLAN 100, and is welcomed.
func TestFVHostL2ModeOverControlVLAN(t *testing.T) {
	hostNS := netnstest.Enter(t)
	vsmNS, err := netns.New()
	if err != nil {
		t.Fatal(err)
	}
	defer vsmNS.Close()
	if err := netns.Set(hostNS); err != nil {
		t.Fatal(err)
	}
	macOf := func(name string) string {
		t.Helper()
		l, err := netlink.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		return l.Attrs().HardwareAddr.String()
	}
	for _, pair := range [][2]string{{"vmk1", "fvk-vmk1"}, {"vmk2", "fvk-vmk2"}, {"ctl0", "vsm-sw"}} {
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: pair[0]}, PeerName: pair[1]}); err != nil {
			t.Fatal(err)
		}
	}
	macs := map[string]string{"vmk1": macOf("vmk1"), "vmk2": macOf("vmk2"), "ctl0": macOf("ctl0")}
	for _, name := range []string{"vmk1", "vmk2"} {
		l, _ := netlink.LinkByName(name)
		if err := netlink.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	ctl, _ := netlink.LinkByName("ctl0")
	if err := netlink.LinkSetNsFd(ctl, int(vsmNS)); err != nil {
		t.Fatal(err)
	}

	// The host's switch: vmk1 and the VSM's control vNIC on VLAN 260,
	// vmk2 on VLAN 100.
	sc := api.SwitchConfig{Module: 3,
		Profiles: []api.PortProfile{
			{Name: "pg-VSM-Control", Type: api.ProfileVethernet, Mode: api.ModeAccess, AccessVLAN: 260, SystemVLANs: "260", Enabled: true},
			{Name: "pg-Storage", Type: api.ProfileVethernet, Mode: api.ModeAccess, AccessVLAN: 100, Enabled: true},
		},
		Ports: []api.Port{
			{Name: "Veth1", Kind: api.PortVeth, Profile: "pg-Storage", Interface: "fvk-vmk2", MACs: []string{macs["vmk2"]}, Owner: "vmk2"},
			{Name: "Veth2", Kind: api.PortVeth, Profile: "pg-VSM-Control", Interface: "fvk-vmk1", MACs: []string{macs["vmk1"]}, Owner: "vmk1"},
			{Name: "Veth3", Kind: api.PortVeth, Profile: "pg-VSM-Control", Interface: "vsm-sw", MACs: []string{macs["ctl0"]}, Owner: "vsm nic 0"},
		}}
	k, err := vem.NewNetlinkKernel()
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	log := slog.New(slog.NewTextHandler(&logBuf{t: t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	dir := t.TempDir()
	agent, err := vem.New(vem.Options{Kernel: k, Store: &vem.Store{Path: filepath.Join(dir, "programming.json")}, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := agent.SetConfig(context.Background(), sc); err != nil {
		t.Fatalf("programming the switch: %v", err)
	}

	// The VSM, in its namespace, at its link-local address.
	vsmH, err := netlink.NewHandleAt(vsmNS, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer vsmH.Close()
	ctl, err = vsmH.LinkByName("ctl0")
	if err == nil {
		err = vsmH.LinkSetUp(ctl)
	}
	if err != nil {
		t.Fatal(err)
	}
	hostH, err := netlink.NewHandleAt(hostNS, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer hostH.Close()
	ll := linkLocal(t, vsmH, "ctl0")
	linkLocal(t, hostH, "vmk1")
	if err := netns.Set(vsmNS); err != nil {
		t.Fatal(err)
	}
	vsm := vsmlinktest.StartOn(t, vsmlinktest.NewCA(t), domain, "[::]:0")
	if err := netns.Set(hostNS); err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(vsm.Addr)

	l, err := vsmlink.New(vsmlink.Options{Agent: agent, JoinFile: filepath.Join(dir, "join.json"), StateFile: filepath.Join(dir, "state.json"),
		HostUUID: hostUUID, Hostname: "esx1", Version: "test", Log: log, Dial: dialIn(hostNS)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	j := vsm.Join(t)
	j.Opaque.VSMs = []string{net.JoinHostPort(ll.String(), port)}
	j.Opaque.Mode, j.Opaque.ControlVLAN = api.SVSModeL2, 260
	if err := l.Join(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	c := vsm.Accept(t, wait)
	c.Epoch = 1
	hello := c.Expect(t, api.VSMHello, wait)
	if hello.Hello.HostUUID != hostUUID {
		t.Errorf("hello = %+v", hello.Hello)
	}
	c.Send(t, api.VSMMessage{Type: api.VSMWelcome, Welcome: &api.VSMWelcomeBody{Module: 3, SwitchName: "dvs", HeartbeatSeconds: 2, DeadSeconds: 8}})
	eventually(t, "connected over vmk1", func() bool {
		st := l.Status()
		return st.Connected && st.VSM == net.JoinHostPort(ll.String()+"%vmk1", port)
	})
}
