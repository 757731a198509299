package netseam

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/flashvisor/flashvisor/api"
)

// Port is one attached vNIC: the input of the desired state besides the port
// groups.
type Port struct {
	VM        string
	NIC       int
	PortGroup string
	MAC       string // the guest's MAC
}

func (p Port) tap() string { return TapName(p.VM, p.NIC) }

func (p Port) check() error {
	if p.VM == "" || strings.ContainsFunc(p.VM, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return fmt.Errorf("VM name %q: %w: empty or has control characters", p.VM, ErrInvalid)
	}
	if p.NIC < 0 || p.NIC > MaxNIC {
		return fmt.Errorf("VM %q: vNIC %d: %w: must be 0-%d", p.VM, p.NIC, ErrInvalid, MaxNIC)
	}
	if _, err := tapMAC(p.MAC); err != nil {
		return fmt.Errorf("VM %q vNIC %d: %w: %w", p.VM, p.NIC, ErrInvalid, err)
	}
	if len(p.alias()) > 255 { // IFALIASZ-1
		return fmt.Errorf("VM %q vNIC %d: %w: names too long to record on the tap", p.VM, p.NIC, ErrInvalid)
	}
	return nil
}

// Link kinds.
const (
	KindBridge = "bridge"
	KindTap    = "tap"
	KindVLAN   = "vlan"
	// KindUplink is a physical NIC: enslaved and set up, never created or
	// deleted.
	KindUplink = "uplink"
)

// Link is one network interface, desired or observed.
type Link struct {
	Name  string
	Kind  string
	Alias string
	// MAC is fixed for taps; bridges get a random one when created, kept
	// from then on (desired "" means: whatever it has).
	MAC string
	// Master is the bridge the link is a port of ("" for none).
	Master string
	// Parent and VLAN describe a VLAN sub-interface.
	Parent string
	VLAN   int
	// Addrs are the host addresses (bridges only).
	Addrs []netip.Prefix
	// Observed only.
	Index int
	MTU   int
	Up    bool
}

// State is a set of links, sorted by name.
type State struct {
	Links []Link
}

func (s State) find(name string) (Link, bool) {
	i, ok := slices.BinarySearchFunc(s.Links, name, func(l Link, n string) int { return strings.Compare(l.Name, n) })
	if !ok {
		return Link{}, false
	}
	return s.Links[i], true
}

// Sort puts the links in name order (Plan and find rely on it).
func (s *State) Sort() {
	slices.SortFunc(s.Links, func(a, b Link) int { return strings.Compare(a.Name, b.Name) })
}

// Desired computes which links must exist, from the port groups, the
// optional uplink and the attached ports. It is pure. Problems with single
// port groups or ports are returned joined, and the rest of the state is
// still computed so that one bad entry does not take down the others.
func Desired(pgs []api.PortGroup, uplink string, ports []Port) (State, error) {
	var st State
	var errs []error
	byName := map[string]api.PortGroup{}
	vlanUsedBy := map[int]string{}
	for _, pg := range sortedPortGroups(pgs) {
		if err := CheckPortGroup(pg); err != nil {
			errs = append(errs, err)
			continue
		}
		if _, dup := byName[pg.Name]; dup {
			errs = append(errs, fmt.Errorf("port group %q: %w", pg.Name, ErrExists))
			continue
		}
		byName[pg.Name] = pg
		br := Link{Name: BridgeName(pg.Name), Kind: KindBridge, Alias: pg.Name}
		if pg.HostAddress != "" {
			br.Addrs = []netip.Prefix{netip.MustParsePrefix(pg.HostAddress)}
		}
		st.Links = append(st.Links, br)
		if uplink == "" {
			continue // an isolated bridge
		}
		if other, ok := vlanUsedBy[pg.VLAN]; ok {
			errs = append(errs, fmt.Errorf("port group %q: VLAN %d already used by port group %q on uplink %s: %w", pg.Name, pg.VLAN, other, uplink, ErrInvalid))
			continue
		}
		vlanUsedBy[pg.VLAN] = pg.Name
		if pg.VLAN == 0 {
			st.Links = append(st.Links, Link{Name: uplink, Kind: KindUplink, Master: br.Name})
			continue
		}
		st.Links = append(st.Links, Link{Name: vlanName(pg.VLAN), Kind: KindVLAN, Parent: uplink, VLAN: pg.VLAN, Master: br.Name})
	}
	if uplink != "" && vlanUsedBy[0] == "" && len(vlanUsedBy) > 0 {
		// The uplink carries the VLAN sub-interfaces: it must be up even
		// when no port group takes its untagged traffic.
		st.Links = append(st.Links, Link{Name: uplink, Kind: KindUplink})
	}
	taps := map[string]Port{}
	for _, p := range sortedPorts(ports) {
		if err := p.check(); err != nil {
			errs = append(errs, err)
			continue
		}
		name := p.tap()
		if other, dup := taps[name]; dup {
			errs = append(errs, fmt.Errorf("VM %q vNIC %d and VM %q vNIC %d: tap %s: %w", other.VM, other.NIC, p.VM, p.NIC, name, ErrNameCollision))
			continue
		}
		taps[name] = p
		mac, _ := tapMAC(p.MAC) // checked
		tap := Link{Name: name, Kind: KindTap, Alias: p.alias(), MAC: mac}
		if _, ok := byName[p.PortGroup]; ok {
			tap.Master = BridgeName(p.PortGroup)
		} else {
			// Keep the tap (its VM may be running) but unplugged.
			errs = append(errs, fmt.Errorf("VM %q vNIC %d: port group %q: %w", p.VM, p.NIC, p.PortGroup, ErrNoPortGroup))
		}
		st.Links = append(st.Links, tap)
	}
	st.Sort()
	for i := 1; i < len(st.Links); i++ {
		if st.Links[i].Name == st.Links[i-1].Name {
			// Only a bridge-name collision between two port groups (or an
			// uplink named like one of ours) can get here.
			errs = append(errs, fmt.Errorf("link %s wanted twice: %w", st.Links[i].Name, ErrNameCollision))
		}
	}
	st.Links = slices.CompactFunc(st.Links, func(a, b Link) bool { return a.Name == b.Name })
	return st, errors.Join(errs...)
}

func sortedPortGroups(pgs []api.PortGroup) []api.PortGroup {
	s := slices.Clone(pgs)
	slices.SortStableFunc(s, func(a, b api.PortGroup) int { return strings.Compare(a.Name, b.Name) })
	return s
}

func sortedPorts(ports []Port) []Port {
	s := slices.Clone(ports)
	slices.SortStableFunc(s, func(a, b Port) int {
		if c := strings.Compare(a.VM, b.VM); c != 0 {
			return c
		}
		return a.NIC - b.NIC
	})
	return s
}

// Op is what an Action does.
type Op int

// Operations, in the order Plan emits them for one link.
const (
	OpDelete Op = iota + 1
	OpCreate
	OpSetAlias
	OpSetMAC
	OpSyncMTU // copy the master's MTU, so a tap never lowers its bridge's
	OpSetMaster
	OpSetUp
	OpAddAddr
	OpDelAddr
)

var opNames = map[Op]string{
	OpDelete: "delete", OpCreate: "create", OpSetAlias: "set alias", OpSetMAC: "set mac",
	OpSyncMTU: "sync mtu", OpSetMaster: "set master", OpSetUp: "set up",
	OpAddAddr: "add addr", OpDelAddr: "del addr",
}

func (o Op) String() string { return opNames[o] }

// Action is one change to the kernel. Link is the desired link (or, for
// OpDelete, the observed one).
type Action struct {
	Op   Op
	Link Link
	Addr netip.Prefix // OpAddAddr, OpDelAddr
}

func (a Action) String() string {
	s := fmt.Sprintf("%s %s %s", a.Op, a.Link.Kind, a.Link.Name)
	switch a.Op {
	case OpCreate:
		if a.Link.Kind == KindVLAN {
			s += fmt.Sprintf(" on %s vlan %d", a.Link.Parent, a.Link.VLAN)
		}
	case OpSetMaster:
		if a.Link.Master == "" {
			return s + " nomaster"
		}
		s += " " + a.Link.Master
	case OpSetMAC:
		s += " " + a.Link.MAC
	case OpSetAlias:
		s += fmt.Sprintf(" %q", a.Link.Alias)
	case OpAddAddr, OpDelAddr:
		s += " " + a.Addr.String()
	}
	return s
}

// Plan lists the actions that turn observed into desired. It is pure, and
// Plan(d, o) is empty when o already matches d, which is what makes
// reconcile idempotent and free of flaps: an existing link is never
// re-created, only corrected. Links of ours (by name prefix) that are not
// desired are deleted; links of others are never touched except the uplink.
// Both states must be sorted.
func Plan(desired, observed State) []Action {
	var acts []Action
	// 1. Taps that are no longer wanted go first: a detached VM's tap must
	// not linger on a bridge that is about to change.
	for _, o := range observed.Links {
		if _, ok := desired.find(o.Name); !ok && ours(o.Name) && o.Kind == KindTap {
			acts = append(acts, Action{Op: OpDelete, Link: o})
		}
	}
	// 2. Bridges, then their members (sub-interfaces, the uplink, taps), so a
	// master always exists when a port is added to it.
	order := map[string]int{KindBridge: 0, KindVLAN: 1, KindUplink: 2, KindTap: 3}
	want := slices.Clone(desired.Links)
	slices.SortStableFunc(want, func(a, b Link) int { return order[a.Kind] - order[b.Kind] })
	gone := map[string]bool{} // replaced earlier in this plan: their ports are free
	for _, d := range want {
		o, exists := observed.find(d.Name)
		if gone[o.Master] {
			o.Master = ""
		}
		if exists && o.Kind != d.Kind {
			if d.Kind == KindUplink || !ours(o.Name) {
				continue // never delete what is not ours; apply reports it
			}
			acts = append(acts, Action{Op: OpDelete, Link: o})
			exists, gone[o.Name] = false, true
		}
		if exists && d.Kind == KindVLAN && (o.Parent != d.Parent || o.VLAN != d.VLAN) {
			acts = append(acts, Action{Op: OpDelete, Link: o})
			exists, gone[o.Name] = false, true
		}
		if !exists {
			if d.Kind == KindUplink {
				// Not there: apply reports it, naming the uplink.
				acts = append(acts, Action{Op: OpSetUp, Link: d})
				continue
			}
			acts = append(acts, Action{Op: OpCreate, Link: d})
			o = Link{Name: d.Name, Kind: d.Kind}
		}
		if d.Kind != KindUplink && o.Alias != d.Alias {
			acts = append(acts, Action{Op: OpSetAlias, Link: d})
		}
		if d.MAC != "" && o.MAC != d.MAC {
			acts = append(acts, Action{Op: OpSetMAC, Link: d})
		}
		if d.Kind == KindTap && d.Master != "" {
			m, ok := observed.find(d.Master)
			if !exists || !ok || gone[m.Name] || o.MTU != m.MTU {
				acts = append(acts, Action{Op: OpSyncMTU, Link: d})
			}
		}
		if o.Master != d.Master && !(d.Kind == KindUplink && d.Master == "" && !ours(o.Master)) {
			// (An uplink that only carries sub-interfaces may stay wherever
			// someone else put it.)
			acts = append(acts, Action{Op: OpSetMaster, Link: d})
		}
		if !o.Up {
			acts = append(acts, Action{Op: OpSetUp, Link: d})
		}
		if d.Kind == KindBridge {
			for _, a := range d.Addrs {
				if !slices.Contains(o.Addrs, a) {
					acts = append(acts, Action{Op: OpAddAddr, Link: d, Addr: a})
				}
			}
			for _, a := range o.Addrs {
				if !slices.Contains(d.Addrs, a) {
					acts = append(acts, Action{Op: OpDelAddr, Link: d, Addr: a})
				}
			}
		}
	}
	// 3. Sub-interfaces and bridges of ours that are no longer wanted, last:
	// their ports have moved by now.
	for _, kind := range []string{KindVLAN, KindBridge} {
		for _, o := range observed.Links {
			if _, ok := desired.find(o.Name); !ok && ours(o.Name) && o.Kind == kind {
				acts = append(acts, Action{Op: OpDelete, Link: o})
			}
		}
	}
	// An uplink that is no longer wanted leaves its bridge (it stays up: it
	// may carry other things, and it is not ours).
	for _, o := range observed.Links {
		if _, ok := desired.find(o.Name); !ok && o.Kind == KindUplink && o.Master != "" && ours(o.Master) {
			o.Master = ""
			acts = append(acts, Action{Op: OpSetMaster, Link: o})
		}
	}
	return acts
}
