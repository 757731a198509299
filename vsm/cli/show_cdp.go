package cli

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// sortedCDP is the switch's CDP neighbors by interface, then device ID.
func sortedCDP(s *Session) []CDPNeighbor {
	ns := slices.Clone(s.sw.CDPNeighbors())
	slices.SortFunc(ns, func(a, b CDPNeighbor) int {
		return cmp.Or(compareIfNames(a.Port, b.Port), strings.Compare(a.Neighbor.DeviceID, b.Neighbor.DeviceID))
	})
	return ns
}

// showCDPNeighbors prints the NX-OS layout: the capability legend, then
// one line per neighbor (a Device-ID of 20 characters or more on a line
// of its own), then the count.
func showCDPNeighbors(s *Session, a *args) (string, error) {
	port := ifName(a)
	var b strings.Builder
	b.WriteString("Capability Codes: R - Router, T - Trans-Bridge, B - Source-Route-Bridge\n")
	b.WriteString("                  S - Switch, H - Host, I - IGMP, r - Repeater,\n")
	b.WriteString("                  V - VoIP-Phone, D - Remotely-Managed-Device,\n")
	b.WriteString("                  s - Supports-STP-Dispute\n\n")
	b.WriteString("Device-ID          Local Intrfce  Hldtme Capability  Platform      Port ID\n")
	n := 0
	for _, e := range sortedCDP(s) {
		if port != "" && e.Port != port {
			continue
		}
		id := e.Neighbor.DeviceID
		if len(id) >= 20 {
			fmt.Fprintf(&b, "%s\n%20s", id, "")
		} else {
			fmt.Fprintf(&b, "%-20s", id)
		}
		fmt.Fprintf(&b, "%-14s %-6d %-9s %-13s %s\n", e.Port, e.Holdtime, e.Neighbor.Capabilities.Letters(),
			e.Neighbor.Platform, e.Neighbor.PortID)
		n++
	}
	fmt.Fprintf(&b, "\nTotal entries displayed: %d\n", n)
	return b.String(), nil
}

// showCDPNeighborsDetail prints each neighbor as NX-OS's `show cdp
// neighbors detail` does.
func showCDPNeighborsDetail(s *Session, _ *args) (string, error) {
	var b strings.Builder
	for _, e := range sortedCDP(s) {
		n := e.Neighbor
		b.WriteString("----------------------------------------\n")
		fmt.Fprintf(&b, "Device ID:%s\n\n", n.DeviceID)
		writeCDPAddrs(&b, "Interface address(es):", n.Addresses)
		fmt.Fprintf(&b, "Platform: %s, Capabilities: %s\n", n.Platform, n.Capabilities.Names())
		fmt.Fprintf(&b, "Interface: %s, Port ID (outgoing port): %s\n", longIfName(e.Port), n.PortID)
		fmt.Fprintf(&b, "Holdtime: %d sec\n\n", e.Holdtime)
		if n.SoftwareVersion != "" {
			fmt.Fprintf(&b, "Version:\n%s\n\n", n.SoftwareVersion)
		}
		fmt.Fprintf(&b, "Advertisement Version: %d\n\n", n.Version)
		if n.NativeVLAN != 0 {
			fmt.Fprintf(&b, "Native VLAN: %d\n", n.NativeVLAN)
		}
		if n.Duplex != "" {
			fmt.Fprintf(&b, "Duplex: %s\n", n.Duplex)
		}
		if n.NativeVLAN != 0 || n.Duplex != "" {
			b.WriteByte('\n')
		}
		if len(n.MgmtAddresses) > 0 {
			writeCDPAddrs(&b, "Mgmt address(es):", n.MgmtAddresses)
		}
	}
	return b.String(), nil
}

func writeCDPAddrs(b *strings.Builder, title string, addrs []netip.Addr) {
	b.WriteString(title + "\n")
	for _, a := range addrs {
		kind := "IPv4"
		if a.Is6() && !a.Is4In6() {
			kind = "IPv6"
		}
		fmt.Fprintf(b, "    %s Address: %s\n", kind, a)
	}
}
