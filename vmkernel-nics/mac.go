package vmknic

import (
	"crypto/sha256"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/flashvisor/flashvisor/api"
)

// Host is what MAC generation needs to know about the host.
type Host struct {
	// UUID is the host's UUID (api.HostInfo.UUID), stable across reboots
	// and upgrades. Required.
	UUID string
	// UplinkMAC is the burned-in MAC of the host's first uplink (the NIC
	// the installer picked, vmnic0's), "" if unknown.
	UplinkMAC string
}

// GenerateMAC returns the MAC a vmknic gets when its configuration has
// none. attempt is 0 unless that MAC is taken (AssignMACs then tries 1, 2,
// ...). The rule follows ESXi's, where vmk0 takes the first uplink's MAC
// and other vmks get 00:50:56:6x:xx:xx, with one change:
//
//   - vswif0, when the uplink's MAC is known, gets 00:50:56:5x:xx:xx with
//     the 20 bits taken from SHA-256 of that MAC. It cannot be the
//     uplink's MAC itself: the uplink is a port of the same Linux bridge,
//     which keeps a local FDB entry for every port's own address and
//     delivers frames for it to the bridge device, so vswif0 would never
//     receive its unicast traffic (see docs/vmknic-design.md). Derived from
//     the uplink's MAC, it still follows the uplink as in ESXi: the same
//     NIC gives the same MAC after a reinstall, a replaced NIC a new one.
//   - every other vmknic (and vswif0 when the uplink is unknown) gets
//     00:50:56:6x:xx:xx with the 20 bits taken from SHA-256 of the host
//     UUID and the vmknic's name: stable for the life of the host, and
//     different on each host so vmk1 of two hosts on one VLAN differ.
//
// Both ranges are inside the 40-7F block that hostd/macaddr generates VM
// MACs in: hostd must count the vmknics' MACs as used.
func GenerateMAC(name string, host Host, attempt int) string {
	var seed string
	fourth := byte(0x60)
	if hw, err := net.ParseMAC(host.UplinkMAC); name == VswifName && err == nil && len(hw) == 6 {
		seed, fourth = fmt.Sprintf("flashvisor vswif0\x00%s\x00%d", hw, attempt), 0x50
	} else {
		seed = fmt.Sprintf("flashvisor vmknic\x00%s\x00%s\x00%d", strings.ToLower(host.UUID), name, attempt)
	}
	h := sha256.Sum256([]byte(seed))
	return net.HardwareAddr{vmwareOUI[0], vmwareOUI[1], vmwareOUI[2], fourth | h[0]&0x0f, h[1], h[2]}.String()
}

// AssignMACs returns a copy of specs in which every vmknic without a MAC
// has its generated one (GenerateMAC), and given MACs are in canonical
// lower-case form. Generated MACs never repeat a given one or each other:
// vmknics are served in order (vswif0, vmk1, vmk2, ...) and one whose MAC
// is taken moves to the next attempt. Callers that store configurations
// should store the result, as ESXi keeps a generated address.
func AssignMACs(specs []api.VMKNIC, host Host) []api.VMKNIC {
	out := slices.Clone(specs)
	taken := map[string]bool{}
	var todo []int
	for i := range out {
		if out[i].MAC == "" {
			todo = append(todo, i)
			continue
		}
		if hw, err := net.ParseMAC(out[i].MAC); err == nil {
			out[i].MAC = hw.String()
		}
		taken[out[i].MAC] = true
	}
	slices.SortStableFunc(todo, func(a, b int) int { return vmkCompare(out[a].Name, out[b].Name) })
	for _, i := range todo {
		for attempt := 0; ; attempt++ {
			mac := GenerateMAC(out[i].Name, host, attempt)
			if !taken[mac] {
				out[i].MAC, taken[mac] = mac, true
				break
			}
		}
	}
	return out
}
