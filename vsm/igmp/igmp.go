// Package igmp decodes the IGMP frames the VEMs relay to the VSM (SPEC
// VEM-9, packet channel), for the VSM's IGMP snooping table (`show ip igmp
// snooping groups`). It reads IGMPv1, v2 and v3 (RFC 1112, 2236, 3376)
// from whole Ethernet frames, checking the IPv4 and IGMP checksums: the
// frames come from hosts the VSM trusts, but from guests it does not.
//
// Snooping keeps no per-source state: a v3 record that includes sources
// counts as a join of its group, one that includes none as a leave.
package igmp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Kind is what an IGMP message does.
type Kind int

const (
	Query  Kind = iota + 1 // a multicast router's (or querier's) query
	Report                 // membership report (v1, v2 or v3)
	Leave                  // v2 leave group
)

func (k Kind) String() string {
	switch k {
	case Query:
		return "query"
	case Report:
		return "report"
	case Leave:
		return "leave"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Record is one group of a report or leave: Join false is a leave.
type Record struct {
	Group netip.Addr
	Join  bool
}

// Message is a decoded IGMP frame.
type Message struct {
	// VLAN is the 802.1Q tag's VLAN ID (0: untagged).
	VLAN    int
	Src     netip.Addr // IPv4 source
	Version int        // 1, 2 or 3
	Kind    Kind
	// Group is a query's group (unspecified: a general query).
	Group netip.Addr
	// Records are a report's or leave's groups.
	Records []Record
}

// ErrNotIGMP marks a frame that is not an IPv4 IGMP packet at all.
var ErrNotIGMP = errors.New("not an IGMP frame")

// maxRecords bounds a v3 report (a 9216-byte frame holds at most ~1100).
const maxRecords = 1024

// Parse decodes an Ethernet frame carrying IGMP.
func Parse(frame []byte) (Message, error) {
	var m Message
	if len(frame) < 14 {
		return m, fmt.Errorf("%w: %d bytes", ErrNotIGMP, len(frame))
	}
	b := frame[12:]
	if binary.BigEndian.Uint16(b) == 0x8100 {
		if len(b) < 4 {
			return m, fmt.Errorf("%w: truncated 802.1Q tag", ErrNotIGMP)
		}
		m.VLAN = int(binary.BigEndian.Uint16(b[2:]) & 0x0fff)
		b = b[4:]
	}
	if len(b) < 2 || binary.BigEndian.Uint16(b) != 0x0800 {
		return m, fmt.Errorf("%w: not IPv4", ErrNotIGMP)
	}
	ip := b[2:]
	if len(ip) < 20 || ip[0]>>4 != 4 {
		return m, fmt.Errorf("%w: bad IPv4 header", ErrNotIGMP)
	}
	ihl := int(ip[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(ip[2:]))
	if ihl < 20 || total < ihl || total > len(ip) {
		return m, fmt.Errorf("IPv4 header: length %d, header %d, frame holds %d", total, ihl, len(ip))
	}
	if ip[9] != 2 {
		return m, fmt.Errorf("%w: IP protocol %d", ErrNotIGMP, ip[9])
	}
	if checksum(ip[:ihl]) != 0 {
		return m, errors.New("IPv4 header checksum is wrong")
	}
	if off := binary.BigEndian.Uint16(ip[6:]); off&0x3fff != 0 {
		return m, errors.New("fragmented IGMP packet")
	}
	m.Src = netip.AddrFrom4([4]byte(ip[12:16]))
	g := ip[ihl:total]
	if len(g) < 8 {
		return m, fmt.Errorf("IGMP message of %d bytes", len(g))
	}
	if checksum(g) != 0 {
		return m, errors.New("IGMP checksum is wrong")
	}
	group := netip.AddrFrom4([4]byte(g[4:8]))
	switch g[0] {
	case 0x11:
		m.Kind, m.Group = Query, group
		switch {
		case len(g) >= 12:
			m.Version = 3
		case g[1] == 0:
			m.Version = 1
		default:
			m.Version = 2
		}
		if group.IsUnspecified() {
			return m, nil
		}
		return m, checkGroup(group)
	case 0x12, 0x16:
		m.Kind, m.Version = Report, 1
		if g[0] == 0x16 {
			m.Version = 2
		}
		m.Records = []Record{{Group: group, Join: true}}
		return m, checkGroup(group)
	case 0x17:
		m.Kind, m.Version = Leave, 2
		m.Records = []Record{{Group: group}}
		return m, checkGroup(group)
	case 0x22:
		m.Kind, m.Version = Report, 3
		return m, m.parseV3(g)
	default:
		return m, fmt.Errorf("IGMP message type %#02x", g[0])
	}
}

// parseV3 reads a v3 report's group records.
func (m *Message) parseV3(g []byte) error {
	n := int(binary.BigEndian.Uint16(g[6:]))
	if n > maxRecords {
		return fmt.Errorf("IGMPv3 report with %d records", n)
	}
	r := g[8:]
	for i := 0; i < n; i++ {
		if len(r) < 8 {
			return fmt.Errorf("IGMPv3 record %d truncated", i+1)
		}
		typ, aux, nsrc := r[0], int(r[1]), int(binary.BigEndian.Uint16(r[2:]))
		size := 8 + 4*nsrc + 4*aux
		if len(r) < size {
			return fmt.Errorf("IGMPv3 record %d: %d sources and %d aux words do not fit", i+1, nsrc, aux)
		}
		group := netip.AddrFrom4([4]byte(r[4:8]))
		if err := checkGroup(group); err != nil {
			return fmt.Errorf("IGMPv3 record %d: %w", i+1, err)
		}
		var join bool
		switch typ {
		case 1, 3: // MODE_IS_INCLUDE, CHANGE_TO_INCLUDE: none is a leave
			join = nsrc > 0
		case 2, 4: // MODE_IS_EXCLUDE, CHANGE_TO_EXCLUDE
			join = true
		case 5: // ALLOW_NEW_SOURCES
			join = nsrc > 0
		case 6: // BLOCK_OLD_SOURCES: no per-source state, nothing changes
			r = r[size:]
			continue
		default:
			return fmt.Errorf("IGMPv3 record %d: type %d", i+1, typ)
		}
		m.Records = append(m.Records, Record{Group: group, Join: join})
		r = r[size:]
	}
	return nil
}

// checkGroup refuses a group that is not an IPv4 multicast address.
func checkGroup(a netip.Addr) error {
	if !a.IsMulticast() {
		return fmt.Errorf("group %s is not a multicast address", a)
	}
	return nil
}

// LinkLocal reports whether a group is in 224.0.0.0/24, which routers and
// switches flood and never snoop.
func LinkLocal(a netip.Addr) bool {
	b := a.As4()
	return a.Is4() && b[0] == 224 && b[1] == 0 && b[2] == 0
}

// checksum is the Internet checksum of b (0 when b holds a right one).
func checksum(b []byte) uint16 {
	var sum uint32
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// Checksum returns the Internet checksum to store in a header whose
// checksum field is zero (tests and frame builders use it).
func Checksum(b []byte) uint16 { return checksum(b) }
