package vem

import "github.com/flashvisor/flashvisor/internal/vlanset"

// VLAN sets are internal/vlanset's (shared with the VSM); these names are
// the VEM's.
const MaxVLAN = vlanset.Max

// ErrVLANRange is the error ParseVLANs wraps.
var ErrVLANRange = vlanset.ErrList

type (
	// VLANSet is a set of VLAN IDs (1-4094), comparable with ==; the zero
	// value is the empty set.
	VLANSet = vlanset.Set
	// VLANRange is an inclusive range of VLAN IDs.
	VLANRange = vlanset.Range
)

// AllVLANs is 1-4094.
func AllVLANs() VLANSet { return vlanset.All() }

// ParseVLANs parses "10-20,30", "all" or "none" (vlanset.Parse).
func ParseVLANs(s string) (VLANSet, error) { return vlanset.Parse(s) }
