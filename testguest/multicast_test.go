package guest

import (
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/flashvisor/flashvisor/internal/netnstest"
)

func TestJoinCommand(t *testing.T) {
	for _, line := range []string{"join", "join ", "join 10.0.0.1", "join ff02::1", "join 239.1.1.1 x"} {
		if _, err := ParseCommand(line); !errors.Is(err, ErrUsage) {
			t.Errorf("ParseCommand(%q) = %v, want a usage error", line, err)
		}
	}
	c, err := ParseCommand("join 239.1.1.1")
	if err != nil || c.Op != OpJoin || c.Addr != netip.MustParseAddr("239.1.1.1") {
		t.Errorf("ParseCommand(join 239.1.1.1) = %+v, %v", c, err)
	}
	var joined []netip.Addr
	g := &Guest{Join: func(a netip.Addr) error {
		if a.String() == "239.9.9.9" {
			return errors.New("no NIC")
		}
		joined = append(joined, a)
		return nil
	}}
	if r, _ := g.Answer("join 239.1.1.1"); r != "FVGUEST JOINED 239.1.1.1" || len(joined) != 1 {
		t.Errorf("join answered %q (joined %v)", r, joined)
	}
	if r, _ := g.Answer("join 239.9.9.9"); r != "FVGUEST ERR no NIC" {
		t.Errorf("failed join answered %q", r)
	}
}

// TestMembershipsJoin joins a group on a veth NIC in a fresh network
// namespace and finds the membership in the kernel's /proc/net/igmp.
func TestMembershipsJoin(t *testing.T) {
	netnstest.Enter(t)
	d := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "nic0"}, PeerName: "peer0"}
	if err := netlink.LinkAdd(d); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(d); err != nil {
		t.Fatal(err)
	}
	var m Memberships
	if err := m.Join(netip.MustParseAddr("239.1.2.3")); err != nil {
		t.Fatal(err)
	}
	if err := m.Join(netip.MustParseAddr("239.1.2.3")); err != nil {
		t.Errorf("second join: %v", err)
	}
	if err := m.Join(netip.MustParseAddr("10.1.2.3")); err == nil {
		t.Error("joined a unicast address")
	}
	b, err := os.ReadFile("/proc/thread-self/net/igmp")
	if err != nil {
		t.Fatal(err)
	}
	// /proc/net/igmp lists groups in host byte order hex: 239.1.2.3 is
	// 030201EF on little-endian machines.
	if !strings.Contains(string(b), "nic0") || !strings.Contains(string(b), "030201EF") {
		t.Errorf("/proc/net/igmp lacks 239.1.2.3 on nic0:\n%s", b)
	}
}
