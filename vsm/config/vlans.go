package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxVLAN is the highest usable VLAN ID (802.1Q reserves 0 and 4095).
const MaxVLAN = 4094

// ErrVLANList is wrapped by every VLAN list parse error.
var ErrVLANList = errors.New("invalid VLAN list")

// VLANSet is a set of VLAN IDs 1-4094. The zero value is empty.
type VLANSet struct{ bits [64]uint64 }

// AllVLANs is the set 1-4094.
func AllVLANs() VLANSet {
	var s VLANSet
	s.AddRange(1, MaxVLAN)
	return s
}

// Has reports whether v is in the set.
func (s *VLANSet) Has(v int) bool {
	return v >= 1 && v <= MaxVLAN && s.bits[v/64]&(1<<(v%64)) != 0
}

// Add adds v (ignored outside 1-4094).
func (s *VLANSet) Add(v int) {
	if v >= 1 && v <= MaxVLAN {
		s.bits[v/64] |= 1 << (v % 64)
	}
}

// AddRange adds from..to inclusive.
func (s *VLANSet) AddRange(from, to int) {
	for v := from; v <= to; v++ {
		s.Add(v)
	}
}

// Remove removes v.
func (s *VLANSet) Remove(v int) {
	if v >= 1 && v <= MaxVLAN {
		s.bits[v/64] &^= 1 << (v % 64)
	}
}

// Union returns s ∪ o.
func (s VLANSet) Union(o VLANSet) VLANSet {
	for i := range s.bits {
		s.bits[i] |= o.bits[i]
	}
	return s
}

// Minus returns s \ o.
func (s VLANSet) Minus(o VLANSet) VLANSet {
	for i := range s.bits {
		s.bits[i] &^= o.bits[i]
	}
	return s
}

// Empty reports whether the set has no VLAN.
func (s VLANSet) Empty() bool { return s == VLANSet{} }

// IsAll reports whether the set is 1-4094.
func (s VLANSet) IsAll() bool { return s == AllVLANs() }

// List returns the VLAN IDs in ascending order.
func (s VLANSet) List() []int {
	var out []int
	for v := 1; v <= MaxVLAN; v++ {
		if s.Has(v) {
			out = append(out, v)
		}
	}
	return out
}

// String formats the set as NX-OS does: "1,100-102,200"; "none" when empty.
func (s VLANSet) String() string {
	var parts []string
	for v := 1; v <= MaxVLAN; v++ {
		if !s.Has(v) {
			continue
		}
		to := v
		for to < MaxVLAN && s.Has(to+1) {
			to++
		}
		if to == v {
			parts = append(parts, strconv.Itoa(v))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", v, to))
		}
		v = to
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ",")
}

// ParseVLANs parses a VLAN list: comma-separated IDs and ascending ranges
// ("100-102,200"), "all" or "none". The empty string is an error: what an
// absent list means is the caller's business.
func ParseVLANs(s string) (VLANSet, error) {
	var set VLANSet
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "all":
		return AllVLANs(), nil
	case "none":
		return set, nil
	case "":
		return set, fmt.Errorf("%w: empty", ErrVLANList)
	}
	if len(s) > 4096 {
		return set, fmt.Errorf("%w: too long", ErrVLANList)
	}
	for item := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(item), "-")
		from, err := parseVID(lo)
		if err != nil {
			return VLANSet{}, fmt.Errorf("%w: %q: %w", ErrVLANList, item, err)
		}
		to := from
		if isRange {
			if to, err = parseVID(hi); err != nil {
				return VLANSet{}, fmt.Errorf("%w: %q: %w", ErrVLANList, item, err)
			}
			if to < from {
				return VLANSet{}, fmt.Errorf("%w: %q: range goes down", ErrVLANList, item)
			}
		}
		set.AddRange(from, to)
	}
	return set, nil
}

func parseVID(s string) (int, error) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 4 || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("%q is not a VLAN ID", s)
	}
	v, _ := strconv.Atoi(s)
	if v < 1 || v > MaxVLAN {
		return 0, fmt.Errorf("VLAN %d out of range 1-%d", v, MaxVLAN)
	}
	return v, nil
}
