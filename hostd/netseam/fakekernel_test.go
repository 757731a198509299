package netseam

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// fakeKernel is an in-memory Kernel that behaves like the bridge code of
// Linux in the ways Plan depends on: deleting a bridge frees its ports, a
// VLAN needs its parent, MTU sync copies the master's.
type fakeKernel struct {
	links   map[string]*Link
	next    int
	noVLAN  bool // like this machine's kernel: no 8021q
	applied []string
}

func newFakeKernel(existing ...string) *fakeKernel {
	k := &fakeKernel{links: map[string]*Link{}, next: 1}
	for _, n := range existing {
		k.add(Link{Name: n, Kind: "device", MTU: 1500, MAC: "52:54:00:00:00:01"})
	}
	return k
}

func (k *fakeKernel) add(l Link) {
	k.next++
	l.Index = k.next
	k.links[l.Name] = &l
}

func (k *fakeKernel) Observe(ctx context.Context, uplink string) (State, error) {
	var st State
	for _, l := range k.links {
		c := *l
		c.Addrs = slices.Clone(l.Addrs)
		switch {
		case ours(c.Name):
		case c.Name == uplink || ours(c.Master):
			c.Kind = KindUplink
		default:
			continue
		}
		st.Links = append(st.Links, c)
	}
	st.Sort()
	return st, nil
}

func (k *fakeKernel) Apply(ctx context.Context, a Action) error {
	if err := k.apply(a); err != nil {
		return fmt.Errorf("%s: %w", a, err)
	}
	k.applied = append(k.applied, a.String())
	return nil
}

var errNoLink = errors.New("link not found")

func (k *fakeKernel) apply(a Action) error {
	d := a.Link
	if a.Op == OpCreate {
		if _, ok := k.links[d.Name]; ok {
			return errors.New("file exists")
		}
		l := Link{Name: d.Name, Kind: d.Kind, MTU: 1500}
		switch d.Kind {
		case KindBridge:
			l.MAC = fmt.Sprintf("02:00:00:00:00:%02x", k.next)
		case KindTap:
			l.MAC = fmt.Sprintf("aa:00:00:00:00:%02x", k.next)
		case KindVLAN:
			if k.noVLAN {
				return fmt.Errorf("%w: operation not supported", ErrNoVLANSupport)
			}
			p, ok := k.links[d.Parent]
			if !ok {
				return fmt.Errorf("uplink: %w", errNoLink)
			}
			l.Parent, l.VLAN, l.MAC, l.MTU = d.Parent, d.VLAN, p.MAC, p.MTU
		default:
			return fmt.Errorf("cannot create %q", d.Kind)
		}
		k.add(l)
		return nil
	}
	l, ok := k.links[d.Name]
	if !ok {
		return errNoLink
	}
	switch a.Op {
	case OpDelete:
		delete(k.links, d.Name)
		for _, o := range k.links {
			if o.Master == d.Name {
				o.Master = ""
			}
			if o.Parent == d.Name {
				delete(k.links, o.Name)
			}
		}
	case OpSetAlias:
		l.Alias = d.Alias
	case OpSetMAC:
		l.MAC = d.MAC
	case OpSyncMTU:
		m, ok := k.links[d.Master]
		if !ok {
			return fmt.Errorf("master: %w", errNoLink)
		}
		l.MTU = m.MTU
	case OpSetMaster:
		if d.Master != "" {
			if _, ok := k.links[d.Master]; !ok {
				return fmt.Errorf("master: %w", errNoLink)
			}
		}
		l.Master = d.Master
	case OpSetUp:
		l.Up = true
	case OpAddAddr:
		if slices.Contains(l.Addrs, a.Addr) {
			return errors.New("file exists")
		}
		l.Addrs = append(l.Addrs, a.Addr)
	case OpDelAddr:
		i := slices.Index(l.Addrs, a.Addr)
		if i < 0 {
			return errors.New("address not found")
		}
		l.Addrs = slices.Delete(l.Addrs, i, i+1)
	default:
		return fmt.Errorf("unknown op %d", a.Op)
	}
	return nil
}

// masters maps each link to its master, for compact assertions.
func (k *fakeKernel) masters() map[string]string {
	m := map[string]string{}
	for _, l := range k.links {
		m[l.Name] = l.Master
	}
	return m
}
