package vmknic

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// ErrNotOurs means a vmknic cannot be configured because a link that this
// package did not create holds its name or its switch end's name.
var ErrNotOurs = errors.New("interface exists and is not a vmknic")

// Op is what a Change does.
type Op int

// Operations, in the order Plan emits them for one vmknic.
const (
	OpDelete           Op = iota + 1 // delete the pair (NIC is the observed one)
	OpDelGateway                     // remove the default route via Gateway through NIC
	OpCreate                         // create the pair: names, MAC, MTU of both ends, alias
	OpSetAlias                       // record NIC.PortGroup
	OpSetMAC                         // the host end's MAC
	OpSetSwitchportMTU               // the switch end's MTU
	OpSetMTU                         // the host end's MTU
	OpSetSwitchportUp                // bring the switch end up
	OpSetUp                          // bring the host end up
	OpDelAddr                        // remove Addr
	OpAddAddr                        // add Addr, or refresh its lifetime
	OpSetGateway                     // default route via NIC.Gateway through NIC (replacing any other)
)

var opNames = map[Op]string{
	OpDelete: "delete", OpDelGateway: "del gateway", OpCreate: "create", OpSetAlias: "set alias",
	OpSetMAC: "set mac", OpSetSwitchportMTU: "set switchport mtu", OpSetMTU: "set mtu",
	OpSetSwitchportUp: "switchport up", OpSetUp: "up", OpDelAddr: "del address", OpAddAddr: "add address",
	OpSetGateway: "set gateway",
}

func (o Op) String() string { return opNames[o] }

// Change is one step of a plan.
type Change struct {
	Op Op
	// NIC is the desired vmknic (the observed one for OpDelete and
	// OpDelGateway).
	NIC NIC
	// Addr is the address of OpAddAddr and OpDelAddr.
	Addr Addr
	// Gateway is the gateway of OpDelGateway (OpSetGateway uses
	// NIC.Gateway).
	Gateway netip.Addr
}

func (c Change) String() string {
	s := c.Op.String() + " " + c.NIC.Name
	switch c.Op {
	case OpCreate:
		s += fmt.Sprintf(" (%s) mac %s mtu %d", c.NIC.Switchport, c.NIC.MAC, c.NIC.MTU)
	case OpSetAlias:
		s += fmt.Sprintf(" port group %q", c.NIC.PortGroup)
	case OpSetMAC:
		s += " " + c.NIC.MAC
	case OpSetMTU:
		s += fmt.Sprint(" ", c.NIC.MTU)
	case OpSetSwitchportMTU:
		s += fmt.Sprintf(" (%s) %d", c.NIC.Switchport, c.NIC.SwitchportMTU)
	case OpSetSwitchportUp:
		s += " (" + c.NIC.Switchport + ")"
	case OpAddAddr, OpDelAddr:
		s += " " + c.Addr.String()
	case OpDelGateway:
		s += " " + c.Gateway.String()
	case OpSetGateway:
		s += " " + c.NIC.Gateway.String()
	}
	return s
}

// lifetimeSlack is how far an observed address's expiry may be from the
// desired one before Plan refreshes it (the kernel counts in seconds).
const lifetimeSlack = 5 * time.Second

// Plan returns the changes that take the kernel from observed to desired,
// in order: pairs no longer wanted (or not veth pairs with the right peer)
// are deleted, default routes that move away are removed, then each vmknic
// in turn is created if missing and brought to its alias, MAC, MTUs, up
// state, addresses and default route. Only what differs is changed: an
// unchanged configuration plans nothing. Removing an address may take the
// default route with it (the kernel flushes it), so the route is set
// again after any removal.
//
// A vmknic whose name or switch-end name is held by a foreign link is
// skipped; the error (ErrNotOurs for each) comes with the changes of the
// others.
func Plan(desired, observed KernelState) ([]Change, error) {
	want := map[string]NIC{}
	for _, d := range desired.NICs {
		want[d.Name] = d
	}
	foreign := map[string]bool{}
	for _, f := range observed.Foreign {
		foreign[f] = true
	}
	var out []Change
	have := map[string]NIC{}
	for _, o := range observed.NICs {
		d, ok := want[o.Name]
		if !ok || o.Kind != "veth" || o.Switchport != d.Switchport {
			out = append(out, Change{Op: OpDelete, NIC: o})
			continue
		}
		have[o.Name] = o
	}
	for _, o := range observed.NICs {
		o, ok := have[o.Name]
		if !ok || !o.Gateway.IsValid() {
			continue
		}
		if d := want[o.Name]; !d.KeepIP && d.Gateway != o.Gateway {
			out = append(out, Change{Op: OpDelGateway, NIC: o, Gateway: o.Gateway})
			o.Gateway = netip.Addr{}
			have[o.Name] = o
		}
	}
	var errs []error
	for _, d := range desired.NICs {
		if foreign[d.Name] || foreign[d.Switchport] {
			errs = append(errs, fmt.Errorf("vmknic %s: %w (%s or %s)", d.Name, ErrNotOurs, d.Name, d.Switchport))
			continue
		}
		o, ok := have[d.Name]
		if !ok {
			out = append(out, Change{Op: OpCreate, NIC: d})
			o = created(d)
		}
		out = append(out, diff(d, o)...)
	}
	return out, errors.Join(errs...)
}

// created is what OpCreate leaves: both ends down, no address.
func created(d NIC) NIC {
	return NIC{
		Name: d.Name, Switchport: d.Switchport, Kind: "veth", PortGroup: d.PortGroup, MAC: d.MAC,
		MTU: d.MTU, SwitchportMTU: d.MTU,
	}
}

// diff plans one existing pair.
func diff(d, o NIC) []Change {
	var out []Change
	add := func(op Op) { out = append(out, Change{Op: op, NIC: d}) }
	if o.PortGroup != d.PortGroup {
		add(OpSetAlias)
	}
	if o.MAC != d.MAC {
		add(OpSetMAC)
	}
	if o.SwitchportMTU != d.SwitchportMTU {
		add(OpSetSwitchportMTU)
	}
	if o.MTU != d.MTU {
		add(OpSetMTU)
	}
	if !o.SwitchportUp {
		add(OpSetSwitchportUp)
	}
	if !o.Up {
		add(OpSetUp)
		o.Gateway = netip.Addr{} // the kernel flushed it when the link went down
	}
	if d.KeepIP {
		return out
	}
	removed := false
	for _, oa := range o.Addrs {
		if _, ok := findAddr(d.Addrs, oa.Prefix); !ok {
			out = append(out, Change{Op: OpDelAddr, NIC: d, Addr: oa})
			removed = true
		}
	}
	for _, da := range d.Addrs {
		if oa, ok := findAddr(o.Addrs, da.Prefix); !ok || !sameLifetime(da, oa) {
			out = append(out, Change{Op: OpAddAddr, NIC: d, Addr: da})
		}
	}
	if d.Gateway.IsValid() && (d.Gateway != o.Gateway || removed) {
		add(OpSetGateway)
	}
	return out
}

func findAddr(as []Addr, p netip.Prefix) (Addr, bool) {
	for _, a := range as {
		if a.Prefix == p {
			return a, true
		}
	}
	return Addr{}, false
}

func sameLifetime(d, o Addr) bool {
	if d.Expires.IsZero() || o.Expires.IsZero() {
		return d.Expires.IsZero() == o.Expires.IsZero()
	}
	diff := d.Expires.Sub(o.Expires)
	return diff <= lifetimeSlack && diff >= -lifetimeSlack
}
