package netseam

import (
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Interface names are limited to IFNAMSIZ-1 = 15 bytes, far fewer than port
// group and VM names, so names are derived from a hash: deterministic (a
// restarted hostd computes the same names and finds its links again) and
// wide enough that distinct inputs never meet in practice (50 bits for
// bridges, 45 bits per VM for taps: with 10,000 VMs the chance of any
// collision is about 1 in 700,000). A collision is still detected through
// the aliases and refused rather than sharing a link.
const (
	maxIfName = 15

	bridgePrefix = "fvpg-"  // + 10 hash characters
	tapPrefix    = "fvt"    // + 9 hash characters + "n" + NIC index
	vlanPrefix   = "fvvlan" // + VLAN ID

	// tapAliasPrefix marks a tap's alias, which records the port (VM, NIC,
	// port group, MAC) so a restarted hostd can adopt the taps of VMs that
	// kept running.
	tapAliasPrefix = "flashvisor-vnic "

	// MaxNIC is the highest vNIC index a tap name has room for.
	MaxNIC = 99
)

var nameEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

func hashName(s string, n int) string {
	sum := sha256.Sum256([]byte(s))
	return nameEncoding.EncodeToString(sum[:])[:n]
}

// BridgeName is the Linux bridge of port group pg.
func BridgeName(pg string) string {
	return bridgePrefix + hashName("portgroup\x00"+pg, 10)
}

// TapName is the tap of vNIC nic (0..MaxNIC) of VM vm. All taps of one VM
// share a prefix, which helps when reading `ip link`.
func TapName(vm string, nic int) string {
	return tapPrefix + hashName("vm\x00"+vm, 9) + "n" + strconv.Itoa(nic)
}

// vlanName is the 802.1Q sub-interface of the uplink for VLAN id. Not
// "<uplink>.<id>": that does not fit in 15 bytes for every NIC name
// (enx001122334455 is already 15).
func vlanName(id int) string {
	return vlanPrefix + strconv.Itoa(id)
}

// ours reports whether a link name is in one of this package's name spaces,
// i.e. whether reconcile may delete it when it is not desired.
func ours(name string) bool {
	return strings.HasPrefix(name, bridgePrefix) || strings.HasPrefix(name, tapPrefix) ||
		strings.HasPrefix(name, vlanPrefix)
}

// tapMAC is the host end's MAC for a guest MAC: the guest's with the first
// byte 0xfe, as libvirt does. The tap must not carry the guest's own MAC, or
// the bridge would take frames for the guest as its own (local FDB entry)
// instead of forwarding them into the tap; 0xfe also keeps the taps from
// winning the bridge's lowest-MAC election (the bridge's MAC is fixed anyway).
func tapMAC(guest string) (string, error) {
	hw, err := net.ParseMAC(guest)
	if err != nil || len(hw) != 6 {
		return "", fmt.Errorf("MAC %q: not a 6-byte Ethernet address", guest)
	}
	hw[0] = 0xfe
	return hw.String(), nil
}

// portAlias is what a tap's IFLA_IFALIAS records.
type portAlias struct {
	VM        string `json:"vm"`
	NIC       int    `json:"nic"`
	PortGroup string `json:"pg"`
	MAC       string `json:"mac"`
}

func (p Port) alias() string {
	b, _ := json.Marshal(portAlias{VM: p.VM, NIC: p.NIC, PortGroup: p.PortGroup, MAC: p.MAC})
	return tapAliasPrefix + string(b)
}

// parseAlias reads back a tap's alias; ok is false for anything else.
func parseAlias(alias string) (Port, bool) {
	rest, ok := strings.CutPrefix(alias, tapAliasPrefix)
	if !ok {
		return Port{}, false
	}
	var a portAlias
	if err := json.Unmarshal([]byte(rest), &a); err != nil {
		return Port{}, false
	}
	p := Port{VM: a.VM, NIC: a.NIC, PortGroup: a.PortGroup, MAC: a.MAC}
	if p.check() != nil {
		return Port{}, false
	}
	return p, true
}
