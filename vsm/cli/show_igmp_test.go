package cli_test

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/flashvisor/flashvisor/vsm/cli"
)

func TestShowIGMPGroups(t *testing.T) {
	s, f := newSession(t)
	f.IGMP = []cli.IGMPGroup{
		{VLAN: 100, Router: true, Version: 2, Ports: []string{"Eth3/2", "Eth4/2"}},
		{VLAN: 100, Group: netip.MustParseAddr("239.1.1.1"), Version: 3, Ports: []string{"Eth4/2", "Veth1", "Veth12"}},
		{VLAN: 200, Group: netip.MustParseAddr("239.9.9.9"), Version: 1, Ports: []string{"Veth7"}},
	}
	for _, tc := range []struct{ line, want string }{
		{"show ip igmp snooping groups", `Type: S - Static, D - Dynamic, R - Router port, F - Fabricpath core port

Vlan  Group Address      Ver  Type  Port list
100   */*                v2   R     Eth3/2 Eth4/2
100   239.1.1.1          v3   D     Eth4/2 Veth1 Veth12
200   239.9.9.9          v1   D     Veth7

Total number of groups: 2
`},
		{"sh ip igmp snoop gr vlan 200", `Type: S - Static, D - Dynamic, R - Router port, F - Fabricpath core port

Vlan  Group Address      Ver  Type  Port list
200   239.9.9.9          v1   D     Veth7

Total number of groups: 1
`},
	} {
		out, err := s.Exec(tc.line)
		if err != nil {
			t.Fatalf("%s: %v", tc.line, err)
		}
		if diff := cmp.Diff(tc.want, out); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.line, diff)
		}
	}
}
