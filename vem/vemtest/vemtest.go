// Package vemtest provides an in-memory kernel for the VEM's pure tests. It
// works on meaning (links, bridge ports, VLANs, static MAC entries), with
// the kernel behaviours that make ordering matter: a link that joins a
// bridge gets the bridge's default VLAN and loses its static entries, a VLAN
// removed from a port leaves its static entries behind (found on the real
// kernel), entries need their VLAN on the port, a master must exist before anything joins it, and only
// VEM-created links can be deleted.
package vemtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/flashvisor/flashvisor/vem"
)

// ErrKernel is wrapped by every refusal of the fake kernel.
var ErrKernel = errors.New("fake kernel refused")

// Kernel is an in-memory vem.Kernel.
type Kernel struct {
	mu sync.Mutex
	st vem.KernelState
	// Applied records every change applied, in order.
	Applied []vem.Change
	// Fail, if set, is consulted before each change; an error it returns
	// is returned by Apply and the change is not made.
	Fail func(vem.Change) error
}

// New returns a kernel that has the given external interfaces (NICs,
// vmknic veths), up and unattached.
func New(external ...string) *Kernel {
	k := &Kernel{}
	for _, n := range external {
		k.st.Links = append(k.st.Links, vem.Link{Name: n, Kind: vem.KindExternal, Up: true})
	}
	k.st.Sort()
	return k
}

// State returns a copy of the current state.
func (k *Kernel) State() vem.KernelState {
	k.mu.Lock()
	defer k.mu.Unlock()
	return clone(k.st)
}

func clone(s vem.KernelState) vem.KernelState {
	c := vem.KernelState{Links: slices.Clone(s.Links), FDB: slices.Clone(s.FDB)}
	for i, l := range c.Links {
		if l.BridgePort != nil {
			bp := *l.BridgePort
			c.Links[i].BridgePort = &bp
		}
		if l.Bridge != nil {
			b := *l.Bridge
			c.Links[i].Bridge = &b
		}
		if l.Bond != nil {
			b := *l.Bond
			c.Links[i].Bond = &b
		}
		c.Links[i].TC.AllowSrc = slices.Clone(l.TC.AllowSrc)
	}
	return c
}

// Observe implements vem.Kernel.
func (k *Kernel) Observe(ctx context.Context) (vem.KernelState, error) {
	return k.State(), nil
}

// Apply implements vem.Kernel.
func (k *Kernel) Apply(ctx context.Context, c vem.Change) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.Fail != nil {
		if err := k.Fail(c); err != nil {
			return err
		}
	}
	if err := k.apply(c); err != nil {
		return fmt.Errorf("%s: %w", c, err)
	}
	k.Applied = append(k.Applied, c)
	k.st.Sort()
	return nil
}

func (k *Kernel) find(name string) *vem.Link {
	for i := range k.st.Links {
		if k.st.Links[i].Name == name {
			return &k.st.Links[i]
		}
	}
	return nil
}

func (k *Kernel) flush(pred func(vem.FDBEntry) bool) {
	k.st.FDB = slices.DeleteFunc(k.st.FDB, pred)
}

func (k *Kernel) apply(c vem.Change) error {
	d := c.Link
	if c.Op == vem.OpCreateLink {
		if k.find(d.Name) != nil {
			return fmt.Errorf("%w: %s exists", ErrKernel, d.Name)
		}
		l := vem.Link{Name: d.Name, Kind: d.Kind}
		switch d.Kind {
		case vem.KindBridge:
			b := *d.Bridge
			l.Bridge, l.BridgePort = &b, &vem.BridgePort{}
			l.BridgePort.VLANs.Add(b.DefaultPVID) // the bridge's own port
			if b.DefaultPVID != 0 {
				l.BridgePort.Untagged.Add(b.DefaultPVID)
				l.BridgePort.PVID = b.DefaultPVID
			}
		case vem.KindBond:
			b := *d.Bond
			l.Bond = &b
		case vem.KindTap:
		default:
			return fmt.Errorf("%w: cannot create a %s", ErrKernel, d.Kind)
		}
		k.st.Links = append(k.st.Links, l)
		return nil
	}
	l := k.find(d.Name)
	if l == nil && c.Op != vem.OpAddFDB && c.Op != vem.OpDelFDB {
		return fmt.Errorf("%w: no link %s", ErrKernel, d.Name)
	}
	switch c.Op {
	case vem.OpDeleteLink:
		if l.Kind == vem.KindExternal {
			return fmt.Errorf("%w: %s is not the VEM's", ErrKernel, d.Name)
		}
		for i := range k.st.Links {
			if s := &k.st.Links[i]; s.Master == d.Name {
				s.Master, s.BridgePort = "", nil
				name := s.Name
				k.flush(func(e vem.FDBEntry) bool { return e.Link == name })
			}
		}
		k.flush(func(e vem.FDBEntry) bool { return e.Link == d.Name })
		k.st.Links = slices.DeleteFunc(k.st.Links, func(x vem.Link) bool { return x.Name == d.Name })
	case vem.OpSetAlias:
		l.Port = d.Port
	case vem.OpSetBridge:
		if l.Kind != vem.KindBridge {
			return fmt.Errorf("%w: %s is not a bridge", ErrKernel, d.Name)
		}
		b := *d.Bridge
		l.Bridge = &b
	case vem.OpSetMaster:
		var pvid int
		if d.Master != "" {
			m := k.find(d.Master)
			if m == nil || (m.Kind != vem.KindBridge && m.Kind != vem.KindBond) {
				return fmt.Errorf("%w: master %s is not a bridge or bond", ErrKernel, d.Master)
			}
			if m.Kind == vem.KindBridge {
				pvid = m.Bridge.DefaultPVID
			}
		}
		l.Master, l.BridgePort = d.Master, nil
		k.flush(func(e vem.FDBEntry) bool { return e.Link == d.Name })
		if m := k.find(d.Master); m != nil && m.Kind == vem.KindBridge {
			bp := &vem.BridgePort{Learning: true, Flood: true}
			if pvid != 0 {
				bp.VLANs.Add(pvid)
				bp.Untagged.Add(pvid)
				bp.PVID = pvid
			}
			l.BridgePort = bp
		}
	case vem.OpSetPortFlags:
		if l.BridgePort == nil || l.Kind == vem.KindBridge {
			return fmt.Errorf("%w: %s is not a bridge port", ErrKernel, d.Name)
		}
		l.BridgePort.Learning, l.BridgePort.Flood, l.BridgePort.Isolated = d.BridgePort.Learning, d.BridgePort.Flood, d.BridgePort.Isolated
	case vem.OpAddVLANs, vem.OpDelVLANs:
		if l.BridgePort == nil {
			return fmt.Errorf("%w: %s is not a bridge port", ErrKernel, d.Name)
		}
		bp := l.BridgePort
		if c.Op == vem.OpDelVLANs {
			if !c.VLANs.Minus(bp.VLANs).Empty() {
				return fmt.Errorf("%w: %s: VLANs %s not on the port", ErrKernel, d.Name, c.VLANs.Minus(bp.VLANs))
			}
			bp.VLANs = bp.VLANs.Minus(c.VLANs)
			bp.Untagged = bp.Untagged.Minus(c.VLANs)
			if c.VLANs.Has(bp.PVID) {
				bp.PVID = 0
			}
			// Like the kernel, static entries of the VLAN stay (only
			// learned ones would be flushed, and the fake learns none).
			return nil
		}
		if c.PVID && c.VLANs.Len() != 1 {
			return fmt.Errorf("%w: a PVID is one VLAN", ErrKernel)
		}
		bp.VLANs = bp.VLANs.Or(c.VLANs)
		if c.Untagged {
			bp.Untagged = bp.Untagged.Or(c.VLANs)
		} else {
			bp.Untagged = bp.Untagged.Minus(c.VLANs)
		}
		if c.PVID {
			bp.PVID = c.VLANs.Ranges()[0].From
		} else if c.VLANs.Has(bp.PVID) {
			bp.PVID = 0
		}
	case vem.OpSetTC:
		l.TC = d.TC
		l.TC.AllowSrc = slices.Clone(d.TC.AllowSrc)
		l.TCKey = d.TC.Key()
	case vem.OpSetUp:
		l.Up = d.Up
	case vem.OpAddFDB:
		p := k.find(c.FDB.Link)
		if p == nil || p.BridgePort == nil || p.Kind == vem.KindBridge {
			return fmt.Errorf("%w: %s is not a bridge port", ErrKernel, c.FDB.Link)
		}
		if !p.BridgePort.VLANs.Has(c.FDB.VLAN) {
			return fmt.Errorf("%w: VLAN %d not on %s", ErrKernel, c.FDB.VLAN, c.FDB.Link)
		}
		if slices.Contains(k.st.FDB, c.FDB) {
			return fmt.Errorf("%w: entry exists", ErrKernel)
		}
		k.st.FDB = append(k.st.FDB, c.FDB)
	case vem.OpDelFDB:
		if !slices.Contains(k.st.FDB, c.FDB) {
			return fmt.Errorf("%w: no such entry", ErrKernel)
		}
		k.flush(func(e vem.FDBEntry) bool { return e == c.FDB })
	default:
		return fmt.Errorf("%w: unknown op %d", ErrKernel, c.Op)
	}
	return nil
}

// MACs implements vem.MACLister: the static entries (the fake learns
// nothing).
func (k *Kernel) MACs(ctx context.Context) ([]vem.MAC, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []vem.MAC
	for _, e := range k.st.FDB {
		out = append(out, vem.MAC{Link: e.Link, MAC: e.MAC, VLAN: e.VLAN, Static: true})
	}
	return out, nil
}
