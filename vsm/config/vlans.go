package config

import "github.com/flashvisor/flashvisor/internal/vlanset"

// VLAN sets are internal/vlanset's (the VEM's too); these names are the
// configuration's.
const MaxVLAN = vlanset.Max

// ErrVLANList is wrapped by every VLAN list parse error.
var ErrVLANList = vlanset.ErrList

// VLANSet is a set of VLAN IDs 1-4094; the zero value is empty.
type VLANSet = vlanset.Set

// AllVLANs is the set 1-4094.
func AllVLANs() VLANSet { return vlanset.All() }

// ParseVLANs parses a VLAN list: "100-102,200", "all" or "none"; the empty
// string is an error (what an absent list means is the caller's business).
func ParseVLANs(s string) (VLANSet, error) { return vlanset.Parse(s) }
