package vem

import (
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
)

// MaxVLAN is the highest usable VLAN ID (0 and 4095 are reserved).
const MaxVLAN = 4094

// ErrVLANRange is the error ParseVLANs wraps.
var ErrVLANRange = errors.New("bad VLAN list")

// VLANSet is a set of VLAN IDs (1-4094), comparable with ==. The zero value
// is the empty set.
type VLANSet [64]uint64

// AllVLANs is 1-4094.
func AllVLANs() VLANSet {
	var s VLANSet
	s.AddRange(1, MaxVLAN)
	return s
}

// Add puts vid in the set; IDs outside 1-4094 are ignored.
func (s *VLANSet) Add(vid int) {
	if vid >= 1 && vid <= MaxVLAN {
		s[vid/64] |= 1 << (vid % 64)
	}
}

// AddRange adds from..to inclusive.
func (s *VLANSet) AddRange(from, to int) {
	for v := max(from, 1); v <= min(to, MaxVLAN); v++ {
		s.Add(v)
	}
}

// Has reports whether vid is in the set.
func (s VLANSet) Has(vid int) bool {
	return vid >= 1 && vid <= MaxVLAN && s[vid/64]&(1<<(vid%64)) != 0
}

// Len is the number of VLANs in the set.
func (s VLANSet) Len() int {
	n := 0
	for _, w := range s {
		n += bits.OnesCount64(w)
	}
	return n
}

// Empty reports whether the set has no VLAN.
func (s VLANSet) Empty() bool { return s == VLANSet{} }

// Minus is s without the VLANs of o.
func (s VLANSet) Minus(o VLANSet) VLANSet {
	for i := range s {
		s[i] &^= o[i]
	}
	return s
}

// And is the intersection of s and o.
func (s VLANSet) And(o VLANSet) VLANSet {
	for i := range s {
		s[i] &= o[i]
	}
	return s
}

// Or is the union of s and o.
func (s VLANSet) Or(o VLANSet) VLANSet {
	for i := range s {
		s[i] |= o[i]
	}
	return s
}

// VLANRange is an inclusive range of VLAN IDs.
type VLANRange struct{ From, To int }

func (r VLANRange) String() string {
	if r.From == r.To {
		return strconv.Itoa(r.From)
	}
	return fmt.Sprintf("%d-%d", r.From, r.To)
}

// Ranges lists the set as maximal ranges, in order.
func (s VLANSet) Ranges() []VLANRange {
	var rs []VLANRange
	for v := 1; v <= MaxVLAN; v++ {
		if !s.Has(v) {
			continue
		}
		if n := len(rs); n > 0 && rs[n-1].To == v-1 {
			rs[n-1].To = v
		} else {
			rs = append(rs, VLANRange{v, v})
		}
	}
	return rs
}

// String formats the set the way NX-OS does: "1,100-110"; "none" when empty.
func (s VLANSet) String() string {
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

// ParseVLANs parses a VLAN list: comma-separated IDs and ranges ("10-20,30",
// spaces around items allowed), "all" (1-4094) or "none". Every ID must be
// 1-4094 and every range ascending; the empty string is an error (callers
// decide what absent means).
func ParseVLANs(s string) (VLANSet, error) {
	var set VLANSet
	switch strings.TrimSpace(s) {
	case "all":
		return AllVLANs(), nil
	case "none":
		return set, nil
	case "":
		return set, fmt.Errorf("%w: empty", ErrVLANRange)
	}
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		lo, hi, isRange := strings.Cut(item, "-")
		from, err := parseVID(lo)
		if err != nil {
			return VLANSet{}, fmt.Errorf("%w: %q: %w", ErrVLANRange, item, err)
		}
		to := from
		if isRange {
			if to, err = parseVID(hi); err != nil {
				return VLANSet{}, fmt.Errorf("%w: %q: %w", ErrVLANRange, item, err)
			}
			if to < from {
				return VLANSet{}, fmt.Errorf("%w: %q: range goes down", ErrVLANRange, item)
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
