package vem

import (
	"strconv"
	"strings"
)

// Kernel interface names (IFNAMSIZ-1 = 15 bytes). Everything the VEM creates
// starts with ifPrefix, which is how Observe and Plan tell the VEM's links
// (which reconcile may delete) from the NICs and vmknic interfaces it only
// enslaves. Names are derived from port numbers, so a restarted agent
// computes the same names and finds its links again.
const (
	ifPrefix = "fv"
	// BridgeName is the host switch: one Linux bridge per host.
	BridgeName = "fvvem0"
	tapPrefix  = "fvveth" // + N of VethN (at most 9 digits)
	bondPrefix = "fvpo"   // + N of PoN
)

// TapName is the tap behind VethN.
func TapName(n int) string { return tapPrefix + strconv.Itoa(n) }

// BondName is the bond behind PoN.
func BondName(n int) string { return bondPrefix + strconv.Itoa(n) }

// ours reports whether the VEM created (and may delete) the link name.
// hostd/netseam's names ("fvpg-", "fvt", "fvvlan") are not ours.
func ours(name string) bool {
	return name == BridgeName || numbered(name, tapPrefix) || numbered(name, bondPrefix)
}

func numbered(name, prefix string) bool {
	rest, ok := strings.CutPrefix(name, prefix)
	return ok && rest != "" && strings.TrimLeft(rest, "0123456789") == ""
}
