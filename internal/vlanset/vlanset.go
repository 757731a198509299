// Package vlanset is a set of 802.1Q VLAN IDs (1-4094) with the NX-OS list
// syntax ("1,100-102,200", "all", "none"). The VEM and the VSM both use it;
// it lives here because the VSM never imports host code.
package vlanset

import (
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
)

// Max is the highest usable VLAN ID (0 and 4095 are reserved).
const Max = 4094

// ErrList is the error Parse wraps.
var ErrList = errors.New("bad VLAN list")

// Set is a set of VLAN IDs (1-4094), comparable with ==. The zero value
// is the empty set.
type Set [64]uint64

// All is 1-4094.
func All() Set {
	var s Set
	s.AddRange(1, Max)
	return s
}

// Add puts vid in the set; IDs outside 1-4094 are ignored.
func (s *Set) Add(vid int) {
	if vid >= 1 && vid <= Max {
		s[vid/64] |= 1 << (vid % 64)
	}
}

// AddRange adds from..to inclusive.
func (s *Set) AddRange(from, to int) {
	for v := max(from, 1); v <= min(to, Max); v++ {
		s.Add(v)
	}
}

// Has reports whether vid is in the set.
func (s Set) Has(vid int) bool {
	return vid >= 1 && vid <= Max && s[vid/64]&(1<<(vid%64)) != 0
}

// Remove takes vid out of the set.
func (s *Set) Remove(vid int) {
	if vid >= 1 && vid <= Max {
		s[vid/64] &^= 1 << (vid % 64)
	}
}

// IsAll reports whether the set is 1-4094.
func (s Set) IsAll() bool { return s == All() }

// List returns the VLAN IDs in ascending order.
func (s Set) List() []int {
	var out []int
	for v := 1; v <= Max; v++ {
		if s.Has(v) {
			out = append(out, v)
		}
	}
	return out
}

// Len is the number of VLANs in the set.
func (s Set) Len() int {
	n := 0
	for _, w := range s {
		n += bits.OnesCount64(w)
	}
	return n
}

// Empty reports whether the set has no VLAN.
func (s Set) Empty() bool { return s == Set{} }

// Minus is s without the VLANs of o.
func (s Set) Minus(o Set) Set {
	for i := range s {
		s[i] &^= o[i]
	}
	return s
}

// And is the intersection of s and o.
func (s Set) And(o Set) Set {
	for i := range s {
		s[i] &= o[i]
	}
	return s
}

// Or is the union of s and o.
func (s Set) Or(o Set) Set {
	for i := range s {
		s[i] |= o[i]
	}
	return s
}

// Range is an inclusive range of VLAN IDs.
type Range struct{ From, To int }

func (r Range) String() string {
	if r.From == r.To {
		return strconv.Itoa(r.From)
	}
	return fmt.Sprintf("%d-%d", r.From, r.To)
}

// Ranges lists the set as maximal ranges, in order.
func (s Set) Ranges() []Range {
	var rs []Range
	for v := 1; v <= Max; v++ {
		if !s.Has(v) {
			continue
		}
		if n := len(rs); n > 0 && rs[n-1].To == v-1 {
			rs[n-1].To = v
		} else {
			rs = append(rs, Range{v, v})
		}
	}
	return rs
}

// String formats the set the way NX-OS does: "1,100-110"; "none" when empty.
func (s Set) String() string {
	rs := s.Ranges()
	if len(rs) == 0 {
		return "none"
	}
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = r.String()
	}
	return strings.Join(parts, ",")
}

// Parse parses a VLAN list: comma-separated IDs and ranges ("10-20,30",
// spaces around items allowed), "all" (1-4094) or "none" (any case). Every ID must be
// 1-4094 and every range ascending; the empty string is an error (callers
// decide what absent means).
func Parse(s string) (Set, error) {
	var set Set
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "all":
		return All(), nil
	case "none":
		return set, nil
	case "":
		return set, fmt.Errorf("%w: empty", ErrList)
	}
	if len(s) > 4096 {
		return set, fmt.Errorf("%w: too long", ErrList)
	}
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		lo, hi, isRange := strings.Cut(item, "-")
		from, err := parseVID(lo)
		if err != nil {
			return Set{}, fmt.Errorf("%w: %q: %w", ErrList, item, err)
		}
		to := from
		if isRange {
			if to, err = parseVID(hi); err != nil {
				return Set{}, fmt.Errorf("%w: %q: %w", ErrList, item, err)
			}
			if to < from {
				return Set{}, fmt.Errorf("%w: %q: range goes down", ErrList, item)
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
	if v < 1 || v > Max {
		return 0, fmt.Errorf("VLAN %d out of range 1-%d", v, Max)
	}
	return v, nil
}
