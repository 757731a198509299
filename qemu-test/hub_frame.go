package qemutest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// Just enough Ethernet, 802.1Q, ARP, IPv4 and ICMP for a test to read what
// crossed a Hub and to be a station on it (Hub.Inject): no options, no
// fragments, no IPv6.

// EtherTypes.
const (
	EtherTypeIPv4 = 0x0800
	EtherTypeARP  = 0x0806
	EtherTypeVLAN = 0x8100
)

// Ether is an Ethernet frame, with at most one 802.1Q tag.
type Ether struct {
	Dst, Src net.HardwareAddr
	// Tagged says the frame carries an 802.1Q tag; VLAN is its VLAN ID
	// (0 untagged or priority-tagged).
	Tagged bool
	VLAN   int
	// Type is the EtherType of the payload (after the tag).
	Type    uint16
	Payload []byte
}

// ErrShortFrame is returned for a frame too short for its headers.
var ErrShortFrame = errors.New("frame too short")

// ParseEther decodes an Ethernet header and its 802.1Q tag, if any. The
// payload shares b.
func ParseEther(b []byte) (Ether, error) {
	if len(b) < 14 {
		return Ether{}, fmt.Errorf("ethernet: %w (%d bytes)", ErrShortFrame, len(b))
	}
	e := Ether{Dst: net.HardwareAddr(b[0:6]), Src: net.HardwareAddr(b[6:12]), Type: binary.BigEndian.Uint16(b[12:14]), Payload: b[14:]}
	if e.Type == EtherTypeVLAN {
		if len(b) < 18 {
			return Ether{}, fmt.Errorf("802.1Q: %w (%d bytes)", ErrShortFrame, len(b))
		}
		e.Tagged = true
		e.VLAN = int(binary.BigEndian.Uint16(b[14:16]) & 0x0fff)
		e.Type = binary.BigEndian.Uint16(b[16:18])
		e.Payload = b[18:]
	}
	return e, nil
}

// Bytes encodes the frame; a Tagged frame gets an 802.1Q tag with VLAN
// (priority 0). Frames are padded to Ethernet's 60-byte minimum.
func (e Ether) Bytes() []byte {
	b := make([]byte, 0, 18+len(e.Payload))
	b = append(b, e.Dst[:6]...)
	b = append(b, e.Src[:6]...)
	if e.Tagged {
		b = binary.BigEndian.AppendUint16(b, EtherTypeVLAN)
		b = binary.BigEndian.AppendUint16(b, uint16(e.VLAN&0x0fff))
	}
	b = binary.BigEndian.AppendUint16(b, e.Type)
	b = append(b, e.Payload...)
	for len(b) < 60 {
		b = append(b, 0)
	}
	return b
}

// ARP operations.
const (
	ARPRequest = 1
	ARPReply   = 2
)

// ARP is an Ethernet/IPv4 ARP packet.
type ARP struct {
	Op                   int
	SenderMAC, TargetMAC net.HardwareAddr
	SenderIP, TargetIP   netip.Addr
}

// ParseARP decodes an Ethernet/IPv4 ARP packet (an Ether payload of type
// EtherTypeARP).
func ParseARP(b []byte) (ARP, error) {
	if len(b) < 28 {
		return ARP{}, fmt.Errorf("arp: %w (%d bytes)", ErrShortFrame, len(b))
	}
	if binary.BigEndian.Uint16(b[0:2]) != 1 || binary.BigEndian.Uint16(b[2:4]) != EtherTypeIPv4 || b[4] != 6 || b[5] != 4 {
		return ARP{}, errors.New("arp: not Ethernet/IPv4")
	}
	return ARP{
		Op:        int(binary.BigEndian.Uint16(b[6:8])),
		SenderMAC: net.HardwareAddr(b[8:14]), SenderIP: netip.AddrFrom4([4]byte(b[14:18])),
		TargetMAC: net.HardwareAddr(b[18:24]), TargetIP: netip.AddrFrom4([4]byte(b[24:28])),
	}, nil
}

// Bytes encodes the packet (a zero TargetMAC for a request).
func (a ARP) Bytes() []byte {
	b := make([]byte, 0, 28)
	b = binary.BigEndian.AppendUint16(b, 1) // Ethernet
	b = binary.BigEndian.AppendUint16(b, EtherTypeIPv4)
	b = append(b, 6, 4)
	b = binary.BigEndian.AppendUint16(b, uint16(a.Op))
	b = append(b, mac6(a.SenderMAC)...)
	b = append(b, a.SenderIP.AsSlice()...)
	b = append(b, mac6(a.TargetMAC)...)
	return append(b, a.TargetIP.AsSlice()...)
}

func mac6(m net.HardwareAddr) []byte {
	if len(m) != 6 {
		return make([]byte, 6)
	}
	return m
}

// ICMP echo types.
const (
	ICMPEchoReply   = 0
	ICMPEchoRequest = 8
)

// ICMPEcho is an IPv4 ICMP echo request or reply.
type ICMPEcho struct {
	Src, Dst netip.Addr
	Type     int // ICMPEchoRequest or ICMPEchoReply
	ID, Seq  uint16
	Data     []byte
}

// ParseICMPEcho decodes an IPv4 packet (an Ether payload of type
// EtherTypeIPv4) carrying an ICMP echo request or reply. Checksums are not
// checked.
func ParseICMPEcho(b []byte) (ICMPEcho, error) {
	if len(b) < 20 || b[0]>>4 != 4 {
		return ICMPEcho{}, errors.New("ipv4: not an IPv4 packet")
	}
	ihl := int(b[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(b[2:4]))
	if ihl < 20 || total < ihl+8 || total > len(b) {
		return ICMPEcho{}, fmt.Errorf("ipv4: %w or bad lengths (header %d, total %d, have %d)", ErrShortFrame, ihl, total, len(b))
	}
	if b[9] != 1 {
		return ICMPEcho{}, fmt.Errorf("ipv4: protocol %d, not ICMP", b[9])
	}
	icmp := b[ihl:total]
	if t := int(icmp[0]); t != ICMPEchoRequest && t != ICMPEchoReply {
		return ICMPEcho{}, fmt.Errorf("icmp: type %d, not an echo", t)
	}
	return ICMPEcho{
		Src: netip.AddrFrom4([4]byte(b[12:16])), Dst: netip.AddrFrom4([4]byte(b[16:20])),
		Type: int(icmp[0]), ID: binary.BigEndian.Uint16(icmp[4:6]), Seq: binary.BigEndian.Uint16(icmp[6:8]),
		Data: icmp[8:],
	}, nil
}

// Bytes encodes the echo as an IPv4 packet (TTL 64, don't fragment) with
// valid checksums.
func (p ICMPEcho) Bytes() []byte {
	icmp := make([]byte, 8, 8+len(p.Data))
	icmp[0] = byte(p.Type)
	binary.BigEndian.PutUint16(icmp[4:6], p.ID)
	binary.BigEndian.PutUint16(icmp[6:8], p.Seq)
	icmp = append(icmp, p.Data...)
	binary.BigEndian.PutUint16(icmp[2:4], inetChecksum(icmp))

	ip := make([]byte, 20, 20+len(icmp))
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:4], uint16(20+len(icmp)))
	binary.BigEndian.PutUint16(ip[4:6], p.ID^p.Seq) // identification
	ip[6] = 0x40                                    // don't fragment
	ip[8] = 64
	ip[9] = 1 // ICMP
	copy(ip[12:16], p.Src.AsSlice())
	copy(ip[16:20], p.Dst.AsSlice())
	binary.BigEndian.PutUint16(ip[10:12], inetChecksum(ip))
	return append(ip, icmp...)
}

// inetChecksum is the Internet checksum (RFC 1071).
func inetChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
