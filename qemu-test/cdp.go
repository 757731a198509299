package qemutest

import (
	"encoding/binary"
	"net"
)

// CDPFrame builds a CDPv2 frame (802.3, LLC/SNAP, checksum set, padded to
// 60 bytes) from srcMAC to 01:00:0c:cc:cc:cc, as a Cisco switch port
// sends it: Device-ID, Port-ID, Capabilities (Switch, IGMP), Version and
// Platform. Inject it on a Hub to make a neighbor appear in the VSM's
// `show cdp neighbors`; holdtime is its lifetime in seconds (0: forget).
// Strings longer than 1400 bytes in all are cut.
func CDPFrame(srcMAC net.HardwareAddr, deviceID, portID, platform string, holdtime byte) []byte {
	pdu := []byte{2, holdtime, 0, 0}
	tlv := func(typ uint16, v []byte) {
		if len(pdu)+4+len(v) > 1400 {
			v = v[:max(0, 1400-len(pdu)-4)]
		}
		pdu = binary.BigEndian.AppendUint16(pdu, typ)
		pdu = binary.BigEndian.AppendUint16(pdu, uint16(4+len(v)))
		pdu = append(pdu, v...)
	}
	tlv(0x0001, []byte(deviceID))
	tlv(0x0003, []byte(portID))
	tlv(0x0004, []byte{0, 0, 0, 0x28})
	tlv(0x0005, []byte("Flashvisor qemutest CDP station"))
	tlv(0x0006, []byte(platform))
	binary.BigEndian.PutUint16(pdu[2:], cdpChecksum(pdu))

	b := make([]byte, 0, 22+len(pdu))
	b = append(b, 0x01, 0x00, 0x0c, 0xcc, 0xcc, 0xcc)
	b = append(b, mac6(srcMAC)...)
	b = binary.BigEndian.AppendUint16(b, uint16(8+len(pdu))) // 802.3 length
	b = append(b, 0xaa, 0xaa, 0x03, 0x00, 0x00, 0x0c, 0x20, 0x00)
	b = append(b, pdu...)
	for len(b) < 60 {
		b = append(b, 0)
	}
	return b
}

// cdpChecksum is the Internet checksum as Cisco computes it for CDP: an
// odd final byte is the low byte of the last word (RFC 1071 pads it as the
// high byte).
func cdpChecksum(b []byte) uint16 {
	var sum uint32
	for ; len(b) >= 2; b = b[2:] {
		sum += uint32(binary.BigEndian.Uint16(b))
	}
	if len(b) == 1 {
		sum += uint32(b[0])
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
