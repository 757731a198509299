package qemutest

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// IGMPQuery returns an IGMPv2 general query from srcMAC/src to 224.0.0.1,
// tagged with vlan (0: untagged), as a multicast router or querier on the
// segment sends it. Inject it on a Hub: the VEMs relay it to the VSM (its
// uplink becomes a router port in `show ip igmp snooping groups`), and
// guests in that VLAN answer with membership reports.
func IGMPQuery(srcMAC net.HardwareAddr, src netip.Addr, vlan int) []byte {
	g := []byte{0x11, 100, 0, 0, 0, 0, 0, 0} // max response 10 s
	binary.BigEndian.PutUint16(g[2:], inetChecksum(g))
	s := src.As4()
	ip := []byte{0x46, 0xc0, 0, 32, 0, 0, 0, 0, 1, 2, 0, 0, s[0], s[1], s[2], s[3], 224, 0, 0, 1, 0x94, 4, 0, 0}
	binary.BigEndian.PutUint16(ip[10:], inetChecksum(ip))
	b := []byte{0x01, 0x00, 0x5e, 0, 0, 1}
	b = append(b, mac6(srcMAC)...)
	if vlan != 0 {
		b = append(b, 0x81, 0x00, byte(vlan>>8), byte(vlan))
	}
	b = append(b, 0x08, 0x00)
	b = append(append(b, ip...), g...)
	for len(b) < 60 {
		b = append(b, 0)
	}
	return b
}
