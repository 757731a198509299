// Package vmknictest provides fakes for tests of the vmknic package and
// its consumers: an in-memory Kernel, a scripted DHCP and a manual Clock.
// They work on meaning (pairs, addresses, the default route, leases), not
// on netlink messages.
package vmknictest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	vmknic "github.com/flashvisor/flashvisor/vmkernel-nics"
)

// ErrKernel is wrapped by every refusal of the fake kernel.
var ErrKernel = errors.New("fake kernel refused")

// Kernel is an in-memory vmknic.Kernel with the kernel behaviours that
// make ordering matter: a name can be created once, a default route needs
// its link up and an address whose subnet holds the gateway, taking a
// link down or removing the address covering the gateway drops the route,
// and there is one default route (setting one replaces the other).
type Kernel struct {
	mu      sync.Mutex
	nics    []vmknic.NIC
	foreign []string
	// Applied records every change applied, in order.
	Applied []vmknic.Change
	// Fail, if set, is consulted before each change; an error it returns
	// is returned by Apply and the change is not made.
	Fail func(vmknic.Change) error
}

// New returns a kernel that has the given foreign links (interfaces that
// are not the vmknic package's).
func New(foreign ...string) *Kernel {
	return &Kernel{foreign: slices.Clone(foreign)}
}

// Put adds or replaces a NIC as if it had been found in the kernel (e.g.
// left by a previous manager).
func (k *Kernel) Put(n vmknic.NIC) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if i := k.index(n.Name); i >= 0 {
		k.nics[i] = clone(n)
		return
	}
	k.nics = append(k.nics, clone(n))
}

// Remove deletes a NIC behind the manager's back (an operator's ip link
// del).
func (k *Kernel) Remove(name string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if i := k.index(name); i >= 0 {
		k.nics = slices.Delete(k.nics, i, i+1)
	}
}

// State returns a copy of the current state.
func (k *Kernel) State() vmknic.KernelState {
	k.mu.Lock()
	defer k.mu.Unlock()
	st := vmknic.KernelState{Foreign: slices.Clone(k.foreign)}
	for _, n := range k.nics {
		st.NICs = append(st.NICs, clone(n))
	}
	st.Sort()
	return st
}

// Changes returns how many changes were applied so far.
func (k *Kernel) Changes() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.Applied)
}

// AppliedSince returns the changes applied after the first n.
func (k *Kernel) AppliedSince(n int) []vmknic.Change {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.Applied[n:])
}

func clone(n vmknic.NIC) vmknic.NIC {
	n.Addrs = slices.Clone(n.Addrs)
	n.KeepIP = false
	return n
}

func (k *Kernel) index(name string) int {
	return slices.IndexFunc(k.nics, func(n vmknic.NIC) bool { return n.Name == name })
}

// Observe implements vmknic.Kernel.
func (k *Kernel) Observe(ctx context.Context) (vmknic.KernelState, error) {
	return k.State(), nil
}

// Apply implements vmknic.Kernel.
func (k *Kernel) Apply(ctx context.Context, c vmknic.Change) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.Fail != nil {
		if err := k.Fail(c); err != nil {
			return fmt.Errorf("%s: %w", c, err)
		}
	}
	if err := k.apply(c); err != nil {
		return fmt.Errorf("%s: %w: %w", c, ErrKernel, err)
	}
	k.Applied = append(k.Applied, c)
	return nil
}

func (k *Kernel) apply(c vmknic.Change) error {
	d := c.NIC
	if c.Op == vmknic.OpCreate {
		for _, name := range []string{d.Name, d.Switchport} {
			if slices.Contains(k.foreign, name) || slices.ContainsFunc(k.nics, func(n vmknic.NIC) bool { return n.Name == name || n.Switchport == name }) {
				return fmt.Errorf("%s exists", name)
			}
		}
		k.nics = append(k.nics, vmknic.NIC{
			Name: d.Name, Switchport: d.Switchport, Kind: "veth", PortGroup: d.PortGroup, MAC: d.MAC,
			MTU: d.MTU, SwitchportMTU: d.MTU,
		})
		return nil
	}
	i := k.index(d.Name)
	if i < 0 {
		if c.Op == vmknic.OpDelete {
			return nil
		}
		return fmt.Errorf("no link %s", d.Name)
	}
	n := &k.nics[i]
	switch c.Op {
	case vmknic.OpDelete:
		k.nics = slices.Delete(k.nics, i, i+1)
	case vmknic.OpSetAlias:
		n.PortGroup = d.PortGroup
	case vmknic.OpSetMAC:
		n.MAC = d.MAC
	case vmknic.OpSetMTU:
		n.MTU = d.MTU
	case vmknic.OpSetSwitchportMTU:
		n.SwitchportMTU = d.SwitchportMTU
	case vmknic.OpSetSwitchportUp:
		n.SwitchportUp = true
		n.Carrier = n.Up
	case vmknic.OpSetUp:
		n.Up = true
		n.Carrier = n.SwitchportUp
	case vmknic.OpAddAddr:
		if j := slices.IndexFunc(n.Addrs, func(a vmknic.Addr) bool { return a.Prefix == c.Addr.Prefix }); j >= 0 {
			n.Addrs[j] = c.Addr
		} else {
			n.Addrs = append(n.Addrs, c.Addr)
		}
	case vmknic.OpDelAddr:
		j := slices.IndexFunc(n.Addrs, func(a vmknic.Addr) bool { return a.Prefix == c.Addr.Prefix })
		if j < 0 {
			return nil
		}
		n.Addrs = slices.Delete(n.Addrs, j, j+1)
		if n.Gateway.IsValid() && !covered(n.Addrs, n.Gateway) {
			n.Gateway = netip.Addr{}
		}
	case vmknic.OpSetGateway:
		if !n.Up {
			return errors.New("network is down")
		}
		if !covered(n.Addrs, d.Gateway) {
			return fmt.Errorf("nexthop %s has invalid gateway", d.Gateway)
		}
		for j := range k.nics {
			k.nics[j].Gateway = netip.Addr{}
		}
		n.Gateway = d.Gateway
	case vmknic.OpDelGateway:
		if n.Gateway == c.Gateway {
			n.Gateway = netip.Addr{}
		}
	default:
		return fmt.Errorf("unknown operation %d", c.Op)
	}
	return nil
}

func covered(as []vmknic.Addr, gw netip.Addr) bool {
	for _, a := range as {
		if a.Prefix.Masked().Contains(gw) {
			return true
		}
	}
	return false
}
