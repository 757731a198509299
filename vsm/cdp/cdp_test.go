package cdp_test

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flashvisor/flashvisor/vsm/cdp"
)

var src = net.HardwareAddr{0x00, 0x1b, 0x54, 0xc2, 0x26, 0x44}

type tlv struct {
	typ uint16
	val []byte
}

func str(typ uint16, s string) tlv { return tlv{typ, []byte(s)} }

func u32(typ uint16, v uint32) tlv { return tlv{typ, binary.BigEndian.AppendUint32(nil, v)} }

// frame builds an 802.3/SNAP CDP frame (padded to 60 bytes, checksum set).
func frame(version, ttl byte, tlvs ...tlv) []byte {
	pdu := []byte{version, ttl, 0, 0}
	for _, t := range tlvs {
		pdu = binary.BigEndian.AppendUint16(pdu, t.typ)
		pdu = binary.BigEndian.AppendUint16(pdu, uint16(4+len(t.val)))
		pdu = append(pdu, t.val...)
	}
	binary.BigEndian.PutUint16(pdu[2:], cdp.Checksum(pdu))
	b := append([]byte{}, cdp.Multicast...)
	b = append(b, src...)
	b = binary.BigEndian.AppendUint16(b, uint16(8+len(pdu)))
	b = append(b, 0xaa, 0xaa, 0x03, 0x00, 0x00, 0x0c, 0x20, 0x00)
	b = append(b, pdu...)
	for len(b) < 60 {
		b = append(b, 0)
	}
	return b
}

// addrs is an address TLV value: IPv4 10.1.1.1, an IPX one (skipped) and
// IPv6 2001:db8::1.
func addrs() []byte {
	v := binary.BigEndian.AppendUint32(nil, 3)
	v = append(v, 1, 1, 0xcc, 0, 4, 10, 1, 1, 1)
	v = append(v, 2, 8, 0xaa, 0xaa, 0x03, 0, 0, 0, 0x81, 0x37, 0, 10)
	v = append(v, make([]byte, 10)...)
	v = append(v, 2, 8, 0xaa, 0xaa, 0x03, 0, 0, 0, 0x86, 0xdd, 0, 16)
	v = append(v, netip.MustParseAddr("2001:db8::1").AsSlice()...)
	return v
}

func full() []tlv {
	return []tlv{
		str(cdp.TLVDeviceID, "core-sw1"),
		{cdp.TLVAddresses, addrs()},
		str(cdp.TLVPortID, "GigabitEthernet0/2"),
		u32(cdp.TLVCapabilities, uint32(cdp.CapSwitch|cdp.CapIGMP)),
		str(cdp.TLVVersion, "Cisco IOS Software, C2960 Software\nVersion 12.2(55)SE\n"),
		str(cdp.TLVPlatform, "cisco WS-C2960G-48T"),
		{cdp.TLVNativeVLAN, []byte{0, 10}},
		{cdp.TLVDuplex, []byte{1}},
		{0x0012, []byte{0}}, // extended trust: skipped
	}
}

func TestParse(t *testing.T) {
	tagged := frame(2, 180, str(cdp.TLVDeviceID, "sw"))
	tagged = append(tagged[:12:12], append([]byte{0x81, 0x00, 0x00, 0x0a}, tagged[12:]...)...)
	for _, tc := range []struct {
		name  string
		frame []byte
		want  cdp.Neighbor
		err   error
	}{
		{"full", frame(2, 180, full()...), cdp.Neighbor{
			SrcMAC: src, Version: 2, Holdtime: 180 * time.Second, DeviceID: "core-sw1",
			Addresses: []netip.Addr{netip.MustParseAddr("10.1.1.1"), netip.MustParseAddr("2001:db8::1")},
			PortID:    "GigabitEthernet0/2", Capabilities: cdp.CapSwitch | cdp.CapIGMP,
			SoftwareVersion: "Cisco IOS Software, C2960 Software\nVersion 12.2(55)SE",
			Platform:        "cisco WS-C2960G-48T", NativeVLAN: 10, Duplex: "full",
		}, nil},
		{"minimal v1", frame(1, 0, str(cdp.TLVDeviceID, "r1")), cdp.Neighbor{SrcMAC: src, Version: 1, DeviceID: "r1"}, nil},
		{"802.1Q tagged", tagged, cdp.Neighbor{SrcMAC: src, Version: 2, Holdtime: 180 * time.Second, DeviceID: "sw"}, nil},
		{"control characters", frame(2, 10, str(cdp.TLVDeviceID, "a\x1b[2Jb\nc\x00"), str(cdp.TLVPortID, "\xffp")),
			cdp.Neighbor{SrcMAC: src, Version: 2, Holdtime: 10 * time.Second, DeviceID: "a?[2Jb?c", PortID: "?p"}, nil},
		{"first of a repeated field", frame(2, 10, str(cdp.TLVDeviceID, "one"), str(cdp.TLVDeviceID, "two")),
			cdp.Neighbor{SrcMAC: src, Version: 2, Holdtime: 10 * time.Second, DeviceID: "one"}, nil},
		{"no device ID", frame(2, 180, str(cdp.TLVPortID, "Gi0/1")), cdp.Neighbor{}, cdp.ErrMalformed},
		{"version 3", frame(3, 180, str(cdp.TLVDeviceID, "x")), cdp.Neighbor{}, cdp.ErrMalformed},
		{"capabilities of 2 bytes", frame(2, 180, str(cdp.TLVDeviceID, "x"), tlv{cdp.TLVCapabilities, []byte{0, 8}}), cdp.Neighbor{}, cdp.ErrMalformed},
		{"address count too high", frame(2, 180, str(cdp.TLVDeviceID, "x"), tlv{cdp.TLVAddresses, []byte{0, 0, 0, 2, 1, 1, 0xcc, 0, 4, 1, 2, 3, 4}}), cdp.Neighbor{}, cdp.ErrMalformed},
		{"address longer than its field", frame(2, 180, str(cdp.TLVDeviceID, "x"), tlv{cdp.TLVAddresses, []byte{0, 0, 0, 1, 1, 1, 0xcc, 0, 4, 1, 2}}), cdp.Neighbor{}, cdp.ErrMalformed},
		{"too short", []byte{1, 2, 3}, cdp.Neighbor{}, cdp.ErrNotCDP},
		{"other destination", func() []byte { b := frame(2, 180, full()...); b[5] = 0xcd; return b }(), cdp.Neighbor{}, cdp.ErrNotCDP},
		{"VTP (protocol 0x2003)", func() []byte { b := frame(2, 180, full()...); b[21] = 0x03; return b }(), cdp.Neighbor{}, cdp.ErrNotCDP},
		{"EtherType frame", func() []byte { b := frame(2, 180, full()...); b[12], b[13] = 0x08, 0x00; return b }(), cdp.Neighbor{}, cdp.ErrNotCDP},
		{"802.3 length past the frame", func() []byte { b := frame(2, 180, full()...); b[12], b[13] = 0x05, 0xdc; return b }(), cdp.Neighbor{}, cdp.ErrMalformed},
		{"802.3 length without CDP header", func() []byte { b := frame(2, 180, full()...); b[12], b[13] = 0, 9; return b }(), cdp.Neighbor{}, cdp.ErrMalformed},
		{"field length 3", func() []byte {
			b := frame(2, 180, full()...)
			b[22+4+3] = 3 // first TLV's length
			return b
		}(), cdp.Neighbor{}, cdp.ErrMalformed},
		{"field past the PDU", func() []byte {
			b := frame(2, 180, str(cdp.TLVDeviceID, "x"))
			b[22+4+3] = 200
			return b
		}(), cdp.Neighbor{}, cdp.ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := cdp.Parse(tc.frame)
			if !errors.Is(err, tc.err) {
				t.Fatalf("Parse = %v, want %v", err, tc.err)
			}
			if d := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
				t.Errorf("Parse (-want +got):\n%s", d)
			}
			if cdp.Match(tc.frame) != !errors.Is(err, cdp.ErrNotCDP) {
				t.Errorf("Match = %v, Parse error %v", cdp.Match(tc.frame), err)
			}
		})
	}
}

func TestCapabilities(t *testing.T) {
	c := cdp.CapRouter | cdp.CapSwitch | cdp.CapIGMP | cdp.CapSTPDispute | 1<<20
	if got, want := c.Letters(), "R S I s"; got != want {
		t.Errorf("Letters() = %q, want %q", got, want)
	}
	if got, want := c.Names(), "Router Switch IGMP Filtering Supports-STP-Dispute"; got != want {
		t.Errorf("Names() = %q, want %q", got, want)
	}
}

func TestChecksum(t *testing.T) {
	for _, tc := range []struct {
		pdu  []byte
		want uint16
	}{
		{[]byte{0x02, 0xb4, 0, 0}, ^uint16(0x02b4)},
		{[]byte{0x02, 0xb4, 0, 0, 0x01}, ^uint16(0x02b5)},             // odd: the last byte is a low byte
		{[]byte{0xff, 0xff, 0, 0, 0x00, 0x02}, ^uint16(0x0002)},       // end-around carry
		{[]byte{0x02, 0xb4, 0, 0, 0xff, 0xff, 0xff}, ^uint16(0x03b3)}, // carry from the odd byte
	} {
		if got := cdp.Checksum(tc.pdu); got != tc.want {
			t.Errorf("Checksum(% x) = %#04x, want %#04x", tc.pdu, got, tc.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(frame(2, 180, full()...))
	f.Add(frame(1, 0, str(cdp.TLVDeviceID, "r1")))
	f.Add(frame(2, 180, str(cdp.TLVDeviceID, "x"), tlv{cdp.TLVAddresses, addrs()}, tlv{cdp.TLVMgmtAddress, addrs()}))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := cdp.Parse(b)
		if err != nil {
			return
		}
		if n.DeviceID == "" || len(n.DeviceID) > 255 || len(n.PortID) > 255 || len(n.Platform) > 255 || len(n.SoftwareVersion) > 1024 {
			t.Errorf("Parse(% x) = %+v: field out of bounds", b, n)
		}
		if !cdp.Match(b) {
			t.Errorf("Parse(% x) succeeded, Match false", b)
		}
		n.Capabilities.Letters()
	})
}
