package main

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/flashvisor/flashvisor/internal/netnstest"
)

// TestControlAdvertise: the control NIC is brought up and advertised at
// its link-local address once usable; a missing NIC is an error.
func TestControlAdvertise(t *testing.T) {
	netnstest.Enter(t)
	// A veth pair (this machine's kernel has no dummy links); its peer
	// must be up too for ctl0 to get a carrier and start DAD.
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "ctl0"}, PeerName: "ctl0-peer"}); err != nil {
		t.Fatal(err)
	}
	if p, err := netlink.LinkByName("ctl0-peer"); err != nil || netlink.LinkSetUp(p) != nil {
		t.Fatalf("ctl0-peer up: %v", err)
	}
	a, err := controlAdvertise(context.Background(), "ctl0", "2001", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	host, port, err := net.SplitHostPort(a)
	ip, perr := netip.ParseAddr(host)
	if err != nil || perr != nil || port != "2001" || !ip.IsLinkLocalUnicast() {
		t.Errorf("controlAdvertise = %q, want [fe80::...]:2001", a)
	}
	if l, err := netlink.LinkByName("ctl0"); err != nil || l.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("ctl0 not up: %v", err)
	}
	if _, err := controlAdvertise(context.Background(), "nope0", "2001", time.Second); err == nil || !strings.Contains(err.Error(), "nope0") {
		t.Errorf("controlAdvertise(missing NIC) = %v, want an error naming it", err)
	}
}
