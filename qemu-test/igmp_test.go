package qemutest

import (
	"net"
	"net/netip"
	"testing"

	"github.com/flashvisor/flashvisor/vem/ctlframe"
	"github.com/flashvisor/flashvisor/vsm/igmp"
)

// The query the e2e tests inject is one the VEM captures and the VSM
// reads as a v2 general query in its VLAN.
func TestIGMPQuery(t *testing.T) {
	f := IGMPQuery(net.HardwareAddr{2, 0, 0, 0, 0xfe, 2}, netip.MustParseAddr("10.100.0.254"), 100)
	if !ctlframe.MatchIGMP(f) {
		t.Fatal("ctlframe.MatchIGMP(IGMPQuery) = false")
	}
	m, err := igmp.Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	if m.Kind != igmp.Query || m.Version != 2 || m.VLAN != 100 || m.Src.String() != "10.100.0.254" || !m.Group.IsUnspecified() {
		t.Errorf("igmp.Parse(IGMPQuery) = %+v", m)
	}
}
