package cli

import (
	"fmt"
	"strconv"
	"strings"
)

// showIGMPGroups prints NX-OS's `show ip igmp snooping groups` layout: the
// type legend, then per VLAN the router ports ("*/*", type R) and each
// group (type D: learned from reports) with its ports.
func showIGMPGroups(s *Session, a *args) (string, error) {
	only := 0
	if v := a.str("vlan"); v != "" {
		only, _ = strconv.Atoi(v)
	}
	var b strings.Builder
	b.WriteString("Type: S - Static, D - Dynamic, R - Router port, F - Fabricpath core port\n\n")
	b.WriteString("Vlan  Group Address      Ver  Type  Port list\n")
	n := 0
	for _, g := range s.sw.IGMPGroups() {
		if only != 0 && g.VLAN != only {
			continue
		}
		addr, typ := "*/*", "R"
		if !g.Router {
			addr, typ = g.Group.String(), "D"
			n++
		}
		ver := "-"
		if g.Version > 0 {
			ver = fmt.Sprintf("v%d", g.Version)
		}
		fmt.Fprintf(&b, "%-5d %-18s %-4s %-5s %s\n", g.VLAN, addr, ver, typ, strings.Join(g.Ports, " "))
	}
	fmt.Fprintf(&b, "\nTotal number of groups: %d\n", n)
	return b.String(), nil
}
