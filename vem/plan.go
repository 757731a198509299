package vem

import (
	"fmt"
	"slices"
)

// Op is what a Change does.
type Op int

// Operations.
const (
	OpDeleteLink Op = iota + 1
	OpCreateLink
	OpSetAlias  // records Link.Port on a link the VEM created
	OpSetBridge // Link.Bridge
	OpSetMaster // Link.Master ("" releases)
	OpSetPortFlags
	OpDelVLANs // VLANs leave the port (its static entries on them go too)
	OpAddVLANs // VLANs join the port, all with the flags PVID and Untagged
	OpSetTC
	OpSetUp // Link.Up, either way
	OpDelFDB
	OpAddFDB
)

var opNames = map[Op]string{
	OpDeleteLink: "delete", OpCreateLink: "create", OpSetAlias: "set alias", OpSetBridge: "set bridge",
	OpSetMaster: "set master", OpSetPortFlags: "set port flags", OpDelVLANs: "del vlans", OpAddVLANs: "add vlans",
	OpSetTC: "set tc", OpSetUp: "set state", OpDelFDB: "del fdb", OpAddFDB: "add fdb",
}

func (o Op) String() string { return opNames[o] }

// Change is one step of a plan. Link is the desired link (the observed one
// for OpDeleteLink and for releasing a link no longer wanted).
type Change struct {
	Op   Op
	Link Link
	// OpAddVLANs, OpDelVLANs.
	VLANs          VLANSet
	PVID, Untagged bool
	// OpAddFDB, OpDelFDB.
	FDB FDBEntry
}

func (c Change) String() string {
	s := fmt.Sprintf("%s %s", c.Op, c.Link.Name)
	switch c.Op {
	case OpCreateLink:
		s += " " + c.Link.Kind
	case OpSetMaster:
		s += " master " + cmpOr(c.Link.Master, "none")
	case OpSetUp:
		s += map[bool]string{true: " up", false: " down"}[c.Link.Up]
	case OpAddVLANs, OpDelVLANs:
		s += " " + c.VLANs.String()
		if c.PVID {
			s += " pvid"
		}
		if c.Untagged {
			s += " untagged"
		}
	case OpAddFDB, OpDelFDB:
		s += fmt.Sprintf(" %s vlan %d", c.FDB.MAC, c.FDB.VLAN)
	case OpSetPortFlags:
		bp := c.Link.BridgePort
		s += fmt.Sprintf(" learning=%t flood=%t isolated=%t", bp.Learning, bp.Flood, bp.Isolated)
	}
	return s
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// newPort is what the kernel gives a link that just joined a bridge whose
// default PVID is pvid.
func newPort(pvid int) *BridgePort {
	bp := &BridgePort{Learning: true, Flood: true}
	if pvid != 0 {
		bp.VLANs.Add(pvid)
		bp.Untagged.Add(pvid)
		bp.PVID = pvid
	}
	return bp
}

// Plan lists the changes that turn observed into desired. It is pure, and
// empty when observed already matches desired: existing links are
// corrected in place, never re-created (a bond whose mode changes is the one
// exception), so a restarted agent changes nothing and traffic is not
// disturbed. A change to one port touches only that port's link and MAC
// entries. Links that are not the VEM's (NICs, vmknic veths) are never
// created or deleted: a missing one is skipped (Status reports it absent),
// an unwanted one is released. Both states must be sorted.
func Plan(desired, observed KernelState) []Change {
	var ch []Change
	add := func(op Op, l Link) { ch = append(ch, Change{Op: op, Link: l}) }
	flushed := map[string]bool{}    // links whose static entries are gone
	vlanGone := map[FDBEntry]bool{} // (link, vlan) pairs removed, MAC empty, their entries deleted
	bridgeDefault := 0
	if b, ok := observed.Find(BridgeName); ok && b.Bridge != nil {
		bridgeDefault = b.Bridge.DefaultPVID
	}

	// 1. What is no longer wanted: VEM links are deleted (taps, then bonds,
	// so members are released with them; the bridge last), other links
	// are released and their tc programming cleared.
	for _, kind := range []string{KindTap, KindBond, KindBridge, KindExternal} {
		for _, o := range observed.Links {
			if _, ok := desired.Find(o.Name); ok || o.Kind != kind {
				continue
			}
			if ours(o.Name) && kind != KindExternal {
				add(OpDeleteLink, o)
				flushed[o.Name] = true
				continue
			}
			if o.TCKey != "" {
				o.TC = TC{}
				add(OpSetTC, o)
			}
			if o.Master != "" && (o.Master == BridgeName || numbered(o.Master, bondPrefix)) {
				o.Master = ""
				add(OpSetMaster, o)
				flushed[o.Name] = true
			}
		}
	}

	// 2. Wanted links: the bridge, then bonds, then their members and the
	// other ports, so a master exists before anything joins it.
	order := map[string]int{KindBridge: 0, KindBond: 1, KindExternal: 2, KindTap: 3}
	want := slices.Clone(desired.Links)
	slices.SortStableFunc(want, func(a, b Link) int { return order[a.Kind] - order[b.Kind] })
	recreated := map[string]bool{}
	for _, d := range want {
		o, exists := observed.Find(d.Name)
		if exists && recreated[o.Master] {
			o.Master = "" // its bond was re-created: it was released
		}
		if exists && o.Kind != d.Kind || exists && d.Kind == KindBond && (o.Bond == nil || *o.Bond != *d.Bond) {
			if d.Kind == KindExternal || !ours(o.Name) {
				continue // never delete what is not ours
			}
			add(OpDeleteLink, o)
			exists, recreated[o.Name], flushed[o.Name] = false, true, true
		}
		if !exists {
			if d.Kind == KindExternal {
				continue // absent: nothing to program
			}
			add(OpCreateLink, d)
			o = Link{Name: d.Name, Kind: d.Kind, Bridge: d.Bridge, Bond: d.Bond}
			if d.Kind == KindBridge {
				o.BridgePort = &BridgePort{} // created with default_pvid 0
			}
		}
		if o.Port != d.Port {
			add(OpSetAlias, d)
		}
		if d.Bridge != nil && (o.Bridge == nil || *o.Bridge != *d.Bridge) {
			add(OpSetBridge, d)
		}
		if o.Master != d.Master {
			add(OpSetMaster, d)
			flushed[d.Name] = true
			o.BridgePort = nil
			if d.Master == BridgeName {
				o.BridgePort = newPort(bridgeDefault)
			}
		}
		if d.Kind == KindBridge {
			bridgeDefault = d.Bridge.DefaultPVID
		}
		if db := d.BridgePort; db != nil {
			ob := o.BridgePort
			if ob == nil {
				ob = &BridgePort{}
			}
			if d.Kind != KindBridge && (ob.Learning != db.Learning || ob.Flood != db.Flood || ob.Isolated != db.Isolated) {
				add(OpSetPortFlags, d)
			}
			if del := ob.VLANs.Minus(db.VLANs); !del.Empty() {
				// The kernel keeps static entries of a VLAN that leaves
				// a port (it only flushes learned ones): delete them
				// first, while their VLAN is still there.
				for _, e := range observed.FDB {
					if e.Link == d.Name && del.Has(e.VLAN) && !flushed[e.Link] {
						ch = append(ch, Change{Op: OpDelFDB, Link: Link{Name: e.Link}, FDB: e})
					}
				}
				ch = append(ch, Change{Op: OpDelVLANs, Link: d, VLANs: del})
				for _, r := range del.Ranges() {
					for v := r.From; v <= r.To; v++ {
						vlanGone[FDBEntry{Link: d.Name, VLAN: v}] = true
					}
				}
			}
			ch = append(ch, vlanAdds(d, *ob, *db)...)
		}
		if o.TCKey != d.TC.Key() {
			add(OpSetTC, d)
		}
		if o.Up != d.Up {
			add(OpSetUp, d)
		}
	}

	// 3. Static MAC entries, last: their VLANs exist on their ports by now.
	have := map[FDBEntry]bool{}
	for _, e := range observed.FDB {
		if flushed[e.Link] || vlanGone[FDBEntry{Link: e.Link, VLAN: e.VLAN}] {
			continue
		}
		have[e] = true
		if _, ok := slices.BinarySearchFunc(desired.FDB, e, compareFDB); !ok {
			ch = append(ch, Change{Op: OpDelFDB, Link: Link{Name: e.Link}, FDB: e})
		}
	}
	created := map[string]bool{}
	for _, c := range ch {
		if c.Op == OpCreateLink {
			created[c.Link.Name] = true
		}
	}
	for _, e := range desired.FDB {
		if !have[e] {
			if _, ok := observed.Find(e.Link); !ok && !created[e.Link] {
				continue // on an absent external link
			}
			ch = append(ch, Change{Op: OpAddFDB, Link: Link{Name: e.Link}, FDB: e})
		}
	}
	return ch
}

// vlanAdds lists the VLAN additions that bring o's flags to d's: VLANs that
// are missing or whose flags differ, grouped by flags.
func vlanAdds(l Link, o, d BridgePort) []Change {
	var tagged, untagged VLANSet
	for _, r := range d.VLANs.Ranges() {
		for v := r.From; v <= r.To; v++ {
			if v == d.PVID {
				continue
			}
			okNow := o.VLANs.Has(v) && o.Untagged.Has(v) == d.Untagged.Has(v) && o.PVID != v
			if okNow {
				continue
			}
			if d.Untagged.Has(v) {
				untagged.Add(v)
			} else {
				tagged.Add(v)
			}
		}
	}
	var ch []Change
	if !tagged.Empty() {
		ch = append(ch, Change{Op: OpAddVLANs, Link: l, VLANs: tagged})
	}
	if !untagged.Empty() {
		ch = append(ch, Change{Op: OpAddVLANs, Link: l, VLANs: untagged, Untagged: true})
	}
	if d.PVID != 0 && (o.PVID != d.PVID || o.Untagged.Has(d.PVID) != d.Untagged.Has(d.PVID)) {
		var s VLANSet
		s.Add(d.PVID)
		ch = append(ch, Change{Op: OpAddVLANs, Link: l, VLANs: s, PVID: true, Untagged: d.Untagged.Has(d.PVID)})
	}
	return ch
}
