package qemutest

import (
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/flashvisor/flashvisor/vsm/cdp"
)

func TestCDPFrame(t *testing.T) {
	src := net.HardwareAddr{0x02, 0, 0, 0, 0xcd, 0x01}
	for _, tc := range []struct{ device, port, platform string }{
		{"hub-sw1", "GigabitEthernet0/1", "WS-C2960G-48T"}, // odd PDU length
		{"hub-sw", "GigabitEthernet0/1", "WS-C2960G-48T"},  // even
		{"x", "", ""},
	} {
		f := CDPFrame(src, tc.device, tc.port, tc.platform, 90)
		n, err := cdp.Parse(f)
		if err != nil {
			t.Fatalf("cdp.Parse(CDPFrame(%q)) = %v", tc.device, err)
		}
		if n.DeviceID != tc.device || n.PortID != tc.port || n.Platform != tc.platform || n.Holdtime != 90*time.Second ||
			n.Version != 2 || n.Capabilities != cdp.CapSwitch|cdp.CapIGMP || n.SrcMAC.String() != src.String() {
			t.Errorf("cdp.Parse(CDPFrame(%q)) = %+v", tc.device, n)
		}
		if len(f) < 60 {
			t.Errorf("CDPFrame(%q) is %d bytes, want at least 60", tc.device, len(f))
		}
		pdu := append([]byte(nil), f[22:14+int(binary.BigEndian.Uint16(f[12:]))]...)
		sum := binary.BigEndian.Uint16(pdu[2:])
		pdu[2], pdu[3] = 0, 0
		if want := cdp.Checksum(pdu); sum != want {
			t.Errorf("CDPFrame(%q) checksum %#04x, want %#04x", tc.device, sum, want)
		}
	}
}
