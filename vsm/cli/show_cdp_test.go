package cli_test

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flashvisor/flashvisor/vsm/cdp"
	"github.com/flashvisor/flashvisor/vsm/cli"
)

func sampleCDP() []cli.CDPNeighbor {
	return []cli.CDPNeighbor{
		{Module: 4, Port: "Eth4/2", Holdtime: 12, Neighbor: cdp.Neighbor{
			SrcMAC: net.HardwareAddr{0, 0x1b, 0x54, 0xc2, 0x26, 0x44}, Version: 2, Holdtime: 180 * time.Second,
			DeviceID: "N5K-A(SSI15450A1B)-long-name", PortID: "Ethernet1/7", Platform: "N5K-C5548UP",
			Capabilities: cdp.CapRouter | cdp.CapSwitch | cdp.CapIGMP | cdp.CapSTPDispute,
		}},
		{Module: 3, Port: "Eth3/2", Holdtime: 140, Neighbor: cdp.Neighbor{
			SrcMAC: net.HardwareAddr{0, 0x1b, 0x54, 0xc2, 0x26, 0x45}, Version: 2, Holdtime: 180 * time.Second,
			DeviceID: "core-sw1", PortID: "Gig0/2", Platform: "WS-C2960G-48T", Capabilities: cdp.CapSwitch | cdp.CapIGMP,
			Addresses:       []netip.Addr{netip.MustParseAddr("10.1.1.1"), netip.MustParseAddr("2001:db8::1")},
			SoftwareVersion: "Cisco IOS Software\nVersion 12.2(55)SE", NativeVLAN: 1, Duplex: "full",
		}},
	}
}

func TestShowCDPNeighbors(t *testing.T) {
	s, f := newSession(t)
	f.CDP = sampleCDP()
	for _, tc := range []struct{ line, want string }{
		{"show cdp neighbors", `Capability Codes: R - Router, T - Trans-Bridge, B - Source-Route-Bridge
                  S - Switch, H - Host, I - IGMP, r - Repeater,
                  V - VoIP-Phone, D - Remotely-Managed-Device,
                  s - Supports-STP-Dispute

Device-ID          Local Intrfce  Hldtme Capability  Platform      Port ID
core-sw1            Eth3/2         140    S I       WS-C2960G-48T Gig0/2
N5K-A(SSI15450A1B)-long-name
                    Eth4/2         12     R S I s   N5K-C5548UP   Ethernet1/7

Total entries displayed: 2
`},
		{"show cdp neighbors interface ethernet 4/2", `Capability Codes: R - Router, T - Trans-Bridge, B - Source-Route-Bridge
                  S - Switch, H - Host, I - IGMP, r - Repeater,
                  V - VoIP-Phone, D - Remotely-Managed-Device,
                  s - Supports-STP-Dispute

Device-ID          Local Intrfce  Hldtme Capability  Platform      Port ID
N5K-A(SSI15450A1B)-long-name
                    Eth4/2         12     R S I s   N5K-C5548UP   Ethernet1/7

Total entries displayed: 1
`},
		{"show cdp neighbors detail", `----------------------------------------
Device ID:core-sw1

Interface address(es):
    IPv4 Address: 10.1.1.1
    IPv6 Address: 2001:db8::1
Platform: WS-C2960G-48T, Capabilities: Switch IGMP Filtering
Interface: Ethernet3/2, Port ID (outgoing port): Gig0/2
Holdtime: 140 sec

Version:
Cisco IOS Software
Version 12.2(55)SE

Advertisement Version: 2

Native VLAN: 1
Duplex: full

----------------------------------------
Device ID:N5K-A(SSI15450A1B)-long-name

Interface address(es):
Platform: N5K-C5548UP, Capabilities: Router Switch IGMP Filtering Supports-STP-Dispute
Interface: Ethernet4/2, Port ID (outgoing port): Ethernet1/7
Holdtime: 12 sec

Advertisement Version: 2

`},
	} {
		if got := run(t, s, tc.line); got != tc.want {
			t.Errorf("%s: (-want +got)\n%s", tc.line, cmp.Diff(tc.want, got))
		}
	}
}
