package igmp_test

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/flashvisor/flashvisor/vsm/igmp"
)

// frame wraps an IGMP message (its checksum computed here) in IPv4 (with
// the router alert option) and Ethernet, tagged with vlan when non-zero.
func frame(vlan int, msg []byte) []byte {
	g := append([]byte(nil), msg...)
	binary.BigEndian.PutUint16(g[2:], 0)
	binary.BigEndian.PutUint16(g[2:], igmp.Checksum(g))
	ip := []byte{0x46, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 10, 0, 0, 7, 224, 0, 0, 22, 0x94, 4, 0, 0}
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)+len(g)))
	binary.BigEndian.PutUint16(ip[10:], igmp.Checksum(ip))
	b := []byte{0x01, 0x00, 0x5e, 0, 0, 0x16, 0x02, 0, 0, 0, 0, 7}
	if vlan != 0 {
		b = append(b, 0x81, 0x00, byte(vlan>>8), byte(vlan))
	}
	b = append(b, 0x08, 0x00)
	return append(append(b, ip...), g...)
}

func msg(typ, code byte, group string) []byte {
	a := netip.MustParseAddr(group).As4()
	return []byte{typ, code, 0, 0, a[0], a[1], a[2], a[3]}
}

// v3 is a v3 report with records of (type, group, sources).
func v3(recs ...any) []byte {
	b := []byte{0x22, 0, 0, 0, 0, 0, 0, byte(len(recs) / 3)}
	for i := 0; i < len(recs); i += 3 {
		a := netip.MustParseAddr(recs[i+1].(string)).As4()
		n := recs[i+2].(int)
		b = append(b, byte(recs[i].(int)), 0, 0, byte(n), a[0], a[1], a[2], a[3])
		for j := 0; j < n; j++ {
			b = append(b, 10, 0, 0, byte(j+1))
		}
	}
	return b
}

func TestParse(t *testing.T) {
	g1, g2 := netip.MustParseAddr("239.1.1.1"), netip.MustParseAddr("239.2.2.2")
	for _, tc := range []struct {
		name  string
		frame []byte
		want  igmp.Message
	}{
		{"v1 report", frame(0, msg(0x12, 0, "239.1.1.1")), igmp.Message{Version: 1, Kind: igmp.Report, Records: []igmp.Record{{g1, true}}}},
		{"v2 report tagged", frame(100, msg(0x16, 0, "239.1.1.1")), igmp.Message{VLAN: 100, Version: 2, Kind: igmp.Report, Records: []igmp.Record{{g1, true}}}},
		{"v2 leave", frame(0, msg(0x17, 0, "239.1.1.1")), igmp.Message{Version: 2, Kind: igmp.Leave, Records: []igmp.Record{{Group: g1}}}},
		{"v1 query", frame(0, msg(0x11, 0, "0.0.0.0")), igmp.Message{Version: 1, Kind: igmp.Query, Group: netip.IPv4Unspecified()}},
		{"v2 query", frame(0, msg(0x11, 100, "0.0.0.0")), igmp.Message{Version: 2, Kind: igmp.Query, Group: netip.IPv4Unspecified()}},
		{"v3 group query", frame(0, append(msg(0x11, 100, "239.1.1.1"), 0, 0, 0, 0)), igmp.Message{Version: 3, Kind: igmp.Query, Group: g1}},
		{"v3 report", frame(0, v3(4, "239.1.1.1", 0, 3, "239.2.2.2", 0, 6, "239.1.1.1", 1, 1, "239.2.2.2", 2)),
			igmp.Message{Version: 3, Kind: igmp.Report, Records: []igmp.Record{{g1, true}, {g2, false}, {g2, true}}}},
	} {
		got, err := igmp.Parse(tc.frame)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		tc.want.Src = netip.MustParseAddr("10.0.0.7")
		if got.VLAN != tc.want.VLAN || got.Src != tc.want.Src || got.Version != tc.want.Version || got.Kind != tc.want.Kind ||
			got.Group != tc.want.Group || !slices.Equal(got.Records, tc.want.Records) {
			t.Errorf("%s: Parse = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	badIP := frame(0, msg(0x16, 0, "239.1.1.1"))
	badIP[14+10] ^= 0xff
	badIGMP := frame(0, msg(0x16, 0, "239.1.1.1"))
	badIGMP[len(badIGMP)-1] ^= 0xff
	udp := frame(0, msg(0x16, 0, "239.1.1.1"))
	udp[14+9] = 17
	twoRecords := v3(4, "239.1.1.1", 0)
	twoRecords[7] = 2 // says two, holds one
	for _, tc := range []struct {
		name    string
		frame   []byte
		notIGMP bool
	}{
		{"ip checksum", badIP, false},
		{"igmp checksum", badIGMP, false},
		{"udp", udp, true},
		{"unicast group", frame(0, msg(0x16, 0, "10.1.1.1")), false},
		{"unknown type", frame(0, msg(0x30, 0, "239.1.1.1")), false},
		{"v3 record type", frame(0, v3(9, "239.1.1.1", 0)), false},
		{"v3 record missing", frame(0, twoRecords), false},
		{"ip length beyond the frame", frame(0, v3(4, "239.1.1.1", 0))[:14+24+8+4], false},
		{"short", []byte{1, 2, 3}, true},
	} {
		_, err := igmp.Parse(tc.frame)
		if err == nil {
			t.Errorf("%s: Parse succeeded", tc.name)
			continue
		}
		if errors.Is(err, igmp.ErrNotIGMP) != tc.notIGMP {
			t.Errorf("%s: Parse = %v, ErrNotIGMP %v, want %v", tc.name, err, errors.Is(err, igmp.ErrNotIGMP), tc.notIGMP)
		}
	}
}

func TestLinkLocal(t *testing.T) {
	for a, want := range map[string]bool{"224.0.0.1": true, "224.0.0.251": true, "224.0.1.1": false, "239.1.1.1": false} {
		if got := igmp.LinkLocal(netip.MustParseAddr(a)); got != want {
			t.Errorf("LinkLocal(%s) = %v", a, got)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(frame(0, msg(0x16, 0, "239.1.1.1")))
	f.Add(frame(100, v3(4, "239.1.1.1", 0, 5, "239.2.2.2", 3)))
	f.Add(frame(0, append(msg(0x11, 100, "0.0.0.0"), 0, 0, 0, 0)))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := igmp.Parse(b)
		if err != nil {
			return
		}
		for _, r := range m.Records {
			if !r.Group.IsMulticast() {
				t.Errorf("record group %s is not multicast", r.Group)
			}
		}
		if m.VLAN < 0 || m.VLAN > 4095 {
			t.Errorf("VLAN %d", m.VLAN)
		}
	})
}
