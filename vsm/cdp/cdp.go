// Package cdp decodes Cisco Discovery Protocol frames (pure): the VSM
// parses the CDP frames its VEMs relay from the hosts' uplinks (SPEC
// VEM-9, packet channel) into `show cdp neighbors` entries.
//
// A CDP frame is an IEEE 802.3 frame to 01:00:0c:cc:cc:cc (an 802.1Q tag
// is allowed) with an LLC/SNAP header (AA AA 03, OUI 00:00:0c, protocol
// 0x2000), then the CDP header (version 1 or 2, holdtime in seconds, a
// checksum) and type-length-value fields whose length counts their own
// 4-byte header. Parse checks every length against the frame and never
// panics; it does not verify the checksum (devices disagree on odd-length
// PDUs, and a relayed frame already crossed a CRC-checked link).
package cdp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Multicast is CDP's destination MAC address.
var Multicast = net.HardwareAddr{0x01, 0x00, 0x0c, 0xcc, 0xcc, 0xcc}

// TLV types decoded.
const (
	TLVDeviceID     = 0x0001
	TLVAddresses    = 0x0002
	TLVPortID       = 0x0003
	TLVCapabilities = 0x0004
	TLVVersion      = 0x0005
	TLVPlatform     = 0x0006
	TLVNativeVLAN   = 0x000a
	TLVDuplex       = 0x000b
	TLVMgmtAddress  = 0x0016
)

// Sentinel errors (wrapped with details).
var (
	// ErrNotCDP: the frame is not a CDP frame (another destination,
	// EtherType or SNAP protocol).
	ErrNotCDP = errors.New("not a CDP frame")
	// ErrMalformed: a CDP frame whose header or fields do not fit.
	ErrMalformed = errors.New("malformed CDP frame")
)

// Capabilities is CDP's capability bit set (TLV 0x0004).
type Capabilities uint32

// Capability bits.
const (
	CapRouter      Capabilities = 0x001
	CapTransBridge Capabilities = 0x002
	CapSRBridge    Capabilities = 0x004
	CapSwitch      Capabilities = 0x008
	CapHost        Capabilities = 0x010
	CapIGMP        Capabilities = 0x020
	CapRepeater    Capabilities = 0x040
	CapPhone       Capabilities = 0x080
	CapRemote      Capabilities = 0x100
	CapSTPDispute  Capabilities = 0x200
	capBits                     = 10
)

// capNames are the letter and the detail name of each bit, in bit order
// (the NX-OS legend of `show cdp neighbors`).
var capNames = [capBits]struct{ letter, name string }{
	{"R", "Router"}, {"T", "Trans-Bridge"}, {"B", "Source-Route-Bridge"}, {"S", "Switch"}, {"H", "Host"},
	{"I", "IGMP Filtering"}, {"r", "Repeater"}, {"V", "VoIP-Phone"}, {"D", "Remotely-Managed-Device"},
	{"s", "Supports-STP-Dispute"},
}

// Letters are the capability codes of `show cdp neighbors` ("R S I").
func (c Capabilities) Letters() string {
	return c.join(func(i int) string { return capNames[i].letter })
}

// Names are the capabilities as `show cdp neighbors detail` spells them.
func (c Capabilities) Names() string { return c.join(func(i int) string { return capNames[i].name }) }

func (c Capabilities) join(f func(int) string) string {
	var out []string
	for i := range capBits {
		if c&(1<<i) != 0 {
			out = append(out, f(i))
		}
	}
	return strings.Join(out, " ")
}

// Neighbor is what one CDP frame says about its sender.
type Neighbor struct {
	// SrcMAC is the frame's source address.
	SrcMAC net.HardwareAddr
	// Version is the CDP version (1 or 2); Holdtime how long the entry
	// stays without a newer frame (0: forget the sender now).
	Version  int
	Holdtime time.Duration
	DeviceID string
	// Addresses are the sender's network addresses (IPv4 and IPv6 only),
	// MgmtAddresses its management addresses (TLV 0x0016).
	Addresses     []netip.Addr
	MgmtAddresses []netip.Addr
	// PortID is the sender's port the frame left on.
	PortID       string
	Capabilities Capabilities
	// SoftwareVersion is the Version TLV (several lines on IOS).
	SoftwareVersion string
	Platform        string
	// NativeVLAN is the sender port's native VLAN (0: not sent);
	// Duplex "full", "half" or "" (not sent).
	NativeVLAN int
	Duplex     string
}

// Bounds on decoded strings: longer ones are cut.
const (
	maxName    = 255
	maxVersion = 1024
	maxAddrs   = 16
)

// Match reports whether frame is addressed like a CDP frame: destination
// 01:00:0c:cc:cc:cc and LLC/SNAP with OUI 00:00:0c, protocol 0x2000
// (whether the rest is well formed is Parse's business).
func Match(frame []byte) bool {
	_, err := payload(frame)
	return !errors.Is(err, ErrNotCDP)
}

// payload returns the CDP PDU (header and TLVs) of frame.
func payload(frame []byte) ([]byte, error) {
	if len(frame) < 14 {
		return nil, fmt.Errorf("%w: %d bytes", ErrNotCDP, len(frame))
	}
	if string(frame[:6]) != string(Multicast) {
		return nil, fmt.Errorf("%w: destination %s", ErrNotCDP, net.HardwareAddr(frame[:6]))
	}
	b := frame[12:]
	if binary.BigEndian.Uint16(b) == 0x8100 {
		if len(b) < 6 {
			return nil, fmt.Errorf("%w: 802.1Q tag cut short", ErrNotCDP)
		}
		b = b[4:]
	}
	n := int(binary.BigEndian.Uint16(b))
	if n > 1500 {
		return nil, fmt.Errorf("%w: EtherType %#04x", ErrNotCDP, n)
	}
	b = b[2:]
	if len(b) < 8 || b[0] != 0xaa || b[1] != 0xaa || b[2] != 0x03 || b[3] != 0 || b[4] != 0 || b[5] != 0x0c ||
		binary.BigEndian.Uint16(b[6:8]) != 0x2000 {
		return nil, fmt.Errorf("%w: no SNAP header of CDP", ErrNotCDP)
	}
	if n > len(b) {
		return nil, fmt.Errorf("%w: 802.3 length %d, %d bytes follow", ErrMalformed, n, len(b))
	}
	if n < 8+4 {
		return nil, fmt.Errorf("%w: 802.3 length %d", ErrMalformed, n)
	}
	return b[8:n], nil // without the padding
}

// Parse decodes a CDP frame (Ethernet header included). It wants a Device
// ID; unknown TLVs are skipped.
func Parse(frame []byte) (Neighbor, error) {
	var n Neighbor
	pdu, err := payload(frame)
	if err != nil {
		return n, err
	}
	n.SrcMAC = net.HardwareAddr(append([]byte(nil), frame[6:12]...))
	n.Version = int(pdu[0])
	if n.Version != 1 && n.Version != 2 {
		return Neighbor{}, fmt.Errorf("%w: version %d", ErrMalformed, n.Version)
	}
	n.Holdtime = time.Duration(pdu[1]) * time.Second
	seen := map[uint16]bool{}
	for b := pdu[4:]; len(b) > 0; {
		if len(b) < 4 {
			return Neighbor{}, fmt.Errorf("%w: %d bytes after the last field", ErrMalformed, len(b))
		}
		typ, l := binary.BigEndian.Uint16(b), int(binary.BigEndian.Uint16(b[2:]))
		if l < 4 || l > len(b) {
			return Neighbor{}, fmt.Errorf("%w: field %#04x length %d, %d bytes left", ErrMalformed, typ, l, len(b))
		}
		v := b[4:l]
		b = b[l:]
		if seen[typ] {
			continue // the first one counts
		}
		seen[typ] = true
		switch typ {
		case TLVDeviceID:
			n.DeviceID = text(v, maxName, false)
		case TLVPortID:
			n.PortID = text(v, maxName, false)
		case TLVPlatform:
			n.Platform = text(v, maxName, false)
		case TLVVersion:
			n.SoftwareVersion = text(v, maxVersion, true)
		case TLVCapabilities:
			if len(v) != 4 {
				return Neighbor{}, fmt.Errorf("%w: capabilities of %d bytes", ErrMalformed, len(v))
			}
			n.Capabilities = Capabilities(binary.BigEndian.Uint32(v))
		case TLVAddresses, TLVMgmtAddress:
			as, err := addresses(v)
			if err != nil {
				return Neighbor{}, fmt.Errorf("%w: field %#04x: %w", ErrMalformed, typ, err)
			}
			if typ == TLVAddresses {
				n.Addresses = as
			} else {
				n.MgmtAddresses = as
			}
		case TLVNativeVLAN:
			if len(v) != 2 {
				return Neighbor{}, fmt.Errorf("%w: native VLAN of %d bytes", ErrMalformed, len(v))
			}
			n.NativeVLAN = int(binary.BigEndian.Uint16(v) & 0x0fff)
		case TLVDuplex:
			if len(v) != 1 {
				return Neighbor{}, fmt.Errorf("%w: duplex of %d bytes", ErrMalformed, len(v))
			}
			n.Duplex = "half"
			if v[0] != 0 {
				n.Duplex = "full"
			}
		}
	}
	if n.DeviceID == "" {
		return Neighbor{}, fmt.Errorf("%w: no device ID", ErrMalformed)
	}
	return n, nil
}

// addresses decodes an address list: a 32-bit count, then each address
// as protocol type (1 NLPID, 2 802.2), protocol length, protocol, a
// 16-bit address length and the address. IPv4 (NLPID 0xcc) and IPv6
// (802.2 ... 86dd, 16 bytes) are kept, others skipped.
func addresses(v []byte) ([]netip.Addr, error) {
	if len(v) < 4 {
		return nil, fmt.Errorf("address list of %d bytes", len(v))
	}
	count := binary.BigEndian.Uint32(v)
	v = v[4:]
	var out []netip.Addr
	for i := uint32(0); i < count; i++ {
		if len(v) < 2 {
			return nil, fmt.Errorf("address %d of %d cut short", i+1, count)
		}
		ptype, plen := v[0], int(v[1])
		if len(v) < 2+plen+2 {
			return nil, fmt.Errorf("address %d of %d cut short", i+1, count)
		}
		proto := v[2 : 2+plen]
		alen := int(binary.BigEndian.Uint16(v[2+plen:]))
		v = v[2+plen+2:]
		if len(v) < alen {
			return nil, fmt.Errorf("address %d of %d: %d bytes, %d left", i+1, count, alen, len(v))
		}
		a := v[:alen]
		v = v[alen:]
		if len(out) == maxAddrs {
			continue
		}
		switch {
		case ptype == 1 && plen == 1 && proto[0] == 0xcc && alen == 4:
			out = append(out, netip.AddrFrom4([4]byte(a)))
		case ptype == 2 && plen >= 2 && binary.BigEndian.Uint16(proto[plen-2:]) == 0x86dd && alen == 16:
			out = append(out, netip.AddrFrom16([16]byte(a)))
		}
	}
	return out, nil
}

// text makes a field printable: invalid UTF-8 and control characters
// (but newlines when multiline) become '?', trailing NULs and spaces go,
// and it is cut at max bytes.
func text(v []byte, max int, multiline bool) string {
	s := strings.TrimRight(strings.ToValidUTF8(string(v), "?"), "\x00 \r\n")
	s = strings.Map(func(r rune) rune {
		if r == '\n' && multiline {
			return r
		}
		if unicode.IsControl(r) {
			return '?'
		}
		return r
	}, s)
	if len(s) > max {
		s = s[:max]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
	}
	return s
}

// Checksum is the CDP checksum of pdu (CDP header and fields, checksum
// field zero): the IP checksum, except that an odd final byte counts as
// the low byte of the last 16-bit word (what Cisco devices compute).
func Checksum(pdu []byte) uint16 {
	var sum uint32
	for len(pdu) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(pdu))
		pdu = pdu[2:]
	}
	if len(pdu) == 1 {
		sum += uint32(pdu[0])
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
